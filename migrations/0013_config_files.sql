-- What each venue file declared when it was last applied (daemon/config/applied.py): a cache
-- that lets `syncd plan` and `syncd apply` skip parsing and checking a file whose bytes, and
-- everything its checks depend on (plugins, templates, limits, credential scope, syncd's own
-- code), are unchanged since. Written by apply in its transaction; a missing or stale row
-- only means the file is read again.
CREATE TABLE config_files (
    -- venues/<file name>, relative to the config directory.
    name        text PRIMARY KEY,
    -- sha256 of the file's bytes.
    digest      text   NOT NULL,
    -- Fingerprint of what the file's checks depended on.
    deps        text   NOT NULL,
    -- {"venue": id, "rows": {provider: digest of the row as applied}, "removed": [provider],
    --  "secret_files": [file: reference]}
    entry       jsonb  NOT NULL,
    revision_id bigint REFERENCES config_revisions (id) ON DELETE SET NULL
);
