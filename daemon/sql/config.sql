-- Config-as-code reconciliation: read desired-vs-actual state, write plans, record revisions.

-- name: lock_apply
SELECT pg_advisory_xact_lock(hashtext('syncd.config.apply')::bigint)

-- name: schema_ready
SELECT to_regclass('integration_configs') IS NOT NULL
   AND to_regclass('field_mapping_templates') IS NOT NULL
   AND to_regclass('config_revisions') IS NOT NULL

-- name: integrations_page
-- A page of integration rows after ($1, $2) in (venue_id, provider) order, as one JSON
-- array of arrays: decoded in one call, where a row at a time costs a JSON decode per
-- jsonb column (measured: 1.3 s for 20,000 rows). Pages keep memory flat. The columns a
-- config sets come as one JSON text, decoded only for a row that is compared, with its md5
-- (the row digest of daemon/config/applied.py; record_files computes the same).
SELECT coalesce(json_agg(json_build_array(
         c.id, c.venue_id, c.provider, c.enabled, c.managed_by, c.spec_hash, c.config,
         md5(c.config)) ORDER BY c.venue_id, c.provider), '[]')::text
  FROM (SELECT i.*, json_build_array(
                 i.venue_name, i.venue_type, i.timezone, i.enabled, i.environment,
                 i.credentials, i.schedules, i.field_mappings, i.options, t.name,
                 i.managed_by)::text AS config
          FROM (SELECT * FROM integration_configs
                 WHERE $1::uuid IS NULL OR (venue_id, provider) > ($1::uuid, $2::text)
                 ORDER BY venue_id, provider
                 LIMIT $3) i
          LEFT JOIN field_mapping_templates t ON t.id = i.template_id) c

-- name: config_files_readable
-- config_files exists (migration 0013) and this role may read it (a plan's read-only role
-- may not: the plan then reads every file).
SELECT to_regclass('config_files') IS NOT NULL
   AND has_table_privilege('config_files', 'SELECT')

-- name: applied_files
-- What the last apply recorded of each venue file (a row at a time: one JSON text of every
-- row costs twice the memory of the record itself while it is decoded).
SELECT name, digest, deps, (entry->>'venue')::uuid AS venue, entry->'rows' AS rows,
       entry->'removed' AS removed, entry->'secret_files' AS secret_files
  FROM config_files

-- name: record_files
-- Venue files as applied: $1 is a JSON array of {name, digest, venue, providers, entry}; the
-- digest of each row a file declares is computed here, after apply's writes, with the
-- expression of integrations_page. A file with a declared row missing is not recorded (the
-- next load reads it); a row that holds the same already is left alone.
INSERT INTO config_files (name, digest, deps, entry, revision_id)
SELECT f.name, f.digest, $2, f.entry || jsonb_build_object('rows', d.rows), $3
  FROM jsonb_to_recordset($1::jsonb)
       AS f(name text, digest text, venue uuid, providers jsonb, entry jsonb)
 CROSS JOIN LATERAL (
       SELECT coalesce(jsonb_object_agg(i.provider, md5(json_build_array(
                  i.venue_name, i.venue_type, i.timezone, i.enabled, i.environment,
                  i.credentials, i.schedules, i.field_mappings, i.options, t.name,
                  i.managed_by)::text)), '{}') AS rows,
              count(*) AS found
         FROM integration_configs i
         LEFT JOIN field_mapping_templates t ON t.id = i.template_id
        WHERE i.venue_id = f.venue
          AND i.provider IN (SELECT jsonb_array_elements_text(f.providers))) d
 WHERE d.found = jsonb_array_length(f.providers)
ON CONFLICT (name) DO UPDATE
   SET digest = EXCLUDED.digest, deps = EXCLUDED.deps, entry = EXCLUDED.entry,
       revision_id = EXCLUDED.revision_id
 WHERE (config_files.digest, config_files.deps, config_files.entry)
       IS DISTINCT FROM (EXCLUDED.digest, EXCLUDED.deps, EXCLUDED.entry)

-- name: forget_files
-- Files no longer in the config directory: every recorded name not in $1.
DELETE FROM config_files f
 WHERE NOT EXISTS (SELECT 1 FROM unnest($1::text[]) AS n(name) WHERE n.name = f.name)

-- name: list_templates
SELECT id, provider, name, description, venue_type, mappings, validation_rules,
       is_default, is_active, managed_by, spec_hash
  FROM field_mapping_templates

-- name: insert_template
INSERT INTO field_mapping_templates
       (provider, name, description, venue_type, mappings, validation_rules, is_default,
        is_active, managed_by, spec_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, true, 'config', $8)
RETURNING id

-- name: update_template
UPDATE field_mapping_templates
   SET description = $2, venue_type = $3, mappings = $4, validation_rules = $5,
       is_default = $6, is_active = true, managed_by = 'config', spec_hash = $7,
       updated_at = now()
 WHERE id = $1

-- name: set_template_default
UPDATE field_mapping_templates SET is_default = true, updated_at = now() WHERE id = $1

-- name: deactivate_template
UPDATE field_mapping_templates
   SET is_active = false, is_default = false, updated_at = now()
 WHERE id = $1

-- name: delete_template
DELETE FROM field_mapping_templates WHERE id = $1

-- name: record_template_use
UPDATE field_mapping_templates
   SET usage_count = usage_count + $2, last_used_at = now()
 WHERE id = $1

-- name: insert_integrations_json
-- Many integrations in one statement, from one JSON array of row arrays ($1): one JSON
-- encoding for all of them, where a row at a time encodes each jsonb column on its own.
INSERT INTO integration_configs
       (venue_id, provider, venue_name, venue_type, timezone, enabled, environment,
        credentials, schedules, field_mappings, options, template_id, template_applied_at,
        managed_by, spec_hash, config_revision_id)
SELECT (r->>0)::uuid, r->>1, r->>2, r->>3, r->>4, (r->>5)::boolean, r->>6,
       r->7, r->8, r->9, r->10, (r->>11)::uuid,
       CASE WHEN r->>11 IS NULL THEN NULL ELSE now() END, 'config', r->>12, $2
  FROM jsonb_array_elements($1::jsonb) AS r

-- name: update_integration
UPDATE integration_configs
   SET venue_name = $2, venue_type = $3, timezone = $4, enabled = $5, environment = $6,
       credentials = $7, schedules = $8, field_mappings = $9, options = $10,
       template_applied_at = CASE WHEN template_id IS DISTINCT FROM $11::uuid
                                  THEN now() ELSE template_applied_at END,
       template_id = $11, managed_by = 'config', spec_hash = $12,
       config_revision_id = $13, updated_at = now()
 WHERE id = $1

-- name: disable_integration
UPDATE integration_configs
   SET enabled = false, config_revision_id = $2, updated_at = now()
 WHERE id = $1

-- name: delete_integration
DELETE FROM integration_configs WHERE id = $1

-- name: latest_revision
SELECT id, content_hash, git_commit, applied_at
  FROM config_revisions
 ORDER BY id DESC
 LIMIT 1

-- name: insert_revision
INSERT INTO config_revisions (content_hash, git_commit, source, applied_by, summary)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, applied_at

-- name: finish_revision
UPDATE config_revisions
   SET created = $2, updated = $3, disabled = $4, deleted = $5, unchanged = $6, summary = $7
 WHERE id = $1
