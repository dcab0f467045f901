-- Schema version 5: saved result queries (LAVA's lava_results_app Query), which notify's
-- named compare queries and results.run_query / refresh_query refer to by owner and name.

CREATE TABLE queries (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- LAVA's admin group: its members may run and refresh the query like the owner.
    group_id           INTEGER REFERENCES groups (id) ON DELETE SET NULL,
    -- A slug, as LAVA's SlugField.
    name               TEXT    NOT NULL CHECK (name <> '' AND length(name) <= 1024),
    description        TEXT    NOT NULL DEFAULT '',
    entity             TEXT    NOT NULL CHECK (entity IN ('testjob', 'testsuite', 'testcase')),
    -- LAVA's condition string (`table__field__operator__value,…`), validated before insert.
    conditions         TEXT    NOT NULL,
    is_published       INTEGER NOT NULL DEFAULT 0 CHECK (is_published IN (0, 1)),
    is_live            INTEGER NOT NULL DEFAULT 0 CHECK (is_live IN (0, 1)),
    is_archived        INTEGER NOT NULL DEFAULT 0 CHECK (is_archived IN (0, 1)),
    -- LAVA's "Results limit" (at least 20).
    result_limit       INTEGER NOT NULL DEFAULT 200 CHECK (result_limit >= 20),
    -- Stamped by refresh_query / refresh_all_queries; NULL until then.
    last_updated       TEXT,
    created            TEXT    NOT NULL,
    UNIQUE (owner_id, name)
);
