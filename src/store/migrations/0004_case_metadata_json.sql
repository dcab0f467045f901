-- The metadata of each test case again, as JSON: result exports render every case's metadata,
-- and decoding JSON costs a tenth of decoding YAML, which made a 10,000-case CSV slow.
-- `metadata` (YAML, as LAVA stores it and as the APIs return it) stays the record; this column
-- is derived from it when the case is inserted. NULL for cases recorded before this migration:
-- readers fall back to `metadata`.
ALTER TABLE test_cases ADD COLUMN metadata_json TEXT;
