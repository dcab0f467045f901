-- The job log has one source of truth: the file at `store::joblog::log_path` (the job's
-- directory under the data directory), and whether it is finished is the job's state. The
-- `job_logs` row duplicated both and was never written by the job path, so every reader
-- that trusted it found no log for a job the scheduler ran.
DROP TABLE job_logs;
