-- Job lists filtered by state and paged by id (the REST list's `?state=…&id__gt=…`, LAVA's
-- default order): with `jobs_state` alone SQLite reads every job of the state and sorts them
-- by id for each page; (state, id) hands it the page in id order and lets the count run on
-- the index alone.
CREATE INDEX jobs_state_id ON jobs (state, id);
