-- The appliance's own worker (`App::build` registers it, named after `instance`): devices
-- added without a worker belong to it, as every device of a LAVA instance has a worker host
-- (lava-api refuses a device whose `worker_host` is null). `Store::ensure_own_worker` marks
-- it and gives it the devices left without one; `insert_device` defaults to it.
ALTER TABLE workers ADD COLUMN own INTEGER NOT NULL DEFAULT 0;
