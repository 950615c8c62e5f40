-- Two-way sync: every inbound change is processed once, with an outcome; consent withdrawn
-- at a provider is held against later pushes; what syncd pushed and wrote is remembered, so
-- its own changes coming back are recognised and an older change never wins over a newer one.

-- The outcome of each inbound change. pending: not processed yet; applied: written to the
-- platform; ignored: nothing to do, for the reason given; failed: a transient failure, tried
-- again from next_attempt_at; dead_letter: failed for good (retries used up, or a value that
-- cannot be written), for an operator (`syncd inbound apply|ignore`).
ALTER TABLE inbound_changes
    ADD COLUMN status text NOT NULL DEFAULT 'pending' CHECK (status IN
        ('pending', 'applied', 'ignored', 'failed', 'dead_letter')),
    -- One word a program can count (echo, conflict, unmapped, ...) and the sentence.
    ADD COLUMN reason_code text,
    ADD COLUMN reason text,
    ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- The record's values in the provider plugin's inbound field catalogue (NULL: none carried).
    ADD COLUMN fields jsonb,
    -- What processing did: per field, the value before, the value offered, the policy and
    -- the decision; who decided (a processor or an operator).
    ADD COLUMN outcome jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN decided_by text;
-- Claim path: changes due, oldest first (the old partial index on processed_at stays for
-- venue-scoped reads).
CREATE INDEX inbound_changes_due ON inbound_changes (id)
    WHERE status IN ('pending', 'failed');
CREATE INDEX inbound_changes_record
    ON inbound_changes (venue_id, provider, entity_type, remote_id, id);
CREATE INDEX inbound_changes_status ON inbound_changes (status, received_at);

-- The newest change processed per remote record: an older one arriving later is stale.
CREATE TABLE inbound_record_state (
    venue_id     uuid        NOT NULL,
    provider     text        NOT NULL,
    entity_type  text        NOT NULL,
    remote_id    text        NOT NULL,
    changed_at   timestamptz NOT NULL,
    change_id    bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (venue_id, provider, entity_type, remote_id)
);

-- Field values syncd wrote to the platform from a provider, and that change's time: the
-- platform side's change time of the field while its value is still this one (newest_wins).
CREATE TABLE inbound_field_writes (
    venue_id     uuid        NOT NULL,
    entity_type  text        NOT NULL,
    local_id     text        NOT NULL,
    field        text        NOT NULL,
    value        jsonb,
    changed_at   timestamptz NOT NULL,
    provider     text        NOT NULL,
    change_id    bigint,
    written_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (venue_id, entity_type, local_id, field)
);

-- Per platform record syncd wrote: the change time its last write gave the row, and the
-- platform's own change time before it. While the row still has that time nobody else
-- changed it since, so its fields syncd did not write last changed at the earlier time.
CREATE TABLE inbound_row_writes (
    venue_id            uuid        NOT NULL,
    entity_type         text        NOT NULL,
    local_id            text        NOT NULL,
    written_version     timestamptz NOT NULL,
    platform_changed_at timestamptz,
    PRIMARY KEY (venue_id, entity_type, local_id)
);

-- The platform values of each pushed record, as the provider last accepted them: a change
-- coming back with these values is syncd's own push (an echo), and the baseline a provider
-- edit is compared with.
ALTER TABLE entity_links ADD COLUMN pushed_values jsonb;

-- Marketing consent per remote record, from the provider's unsubscribes (and cleaned
-- addresses) and subscribes. While withdrawn and not lifted, no push may subscribe the
-- person again. Lifted when the platform opts them in after the withdrawal (the engine sees
-- the platform's opt-in go from false to true), or by a later subscribe at the provider.
CREATE TABLE consent_holds (
    venue_id     uuid        NOT NULL,
    provider     text        NOT NULL,
    entity_type  text        NOT NULL,
    remote_id    text        NOT NULL,
    local_id     text,
    state        text        NOT NULL CHECK (state IN ('withdrawn', 'given')),
    -- When the provider says it happened (else when it was received).
    event_at     timestamptz NOT NULL,
    change_id    bigint,
    reason       text        NOT NULL DEFAULT '',
    -- The platform's opt-in as last seen while the hold stood (NULL: not seen yet).
    platform_opt_in boolean,
    lifted_at    timestamptz,
    lifted_reason text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (venue_id, provider, entity_type, remote_id)
);
CREATE INDEX consent_holds_local ON consent_holds (venue_id, provider, entity_type, local_id)
    WHERE state = 'withdrawn' AND lifted_at IS NULL;

-- Consent is recorded in the transaction that stores the change, whichever path stored it
-- (webhook processing or a pull) and whether or not any inbound mapping exists: an
-- unsubscribe holds at once. A later event wins over an earlier one only (out-of-order
-- deliveries); a subscribe only lifts an existing hold.
CREATE FUNCTION syncd_inbound_consent() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO consent_holds AS h (venue_id, provider, entity_type, remote_id, local_id,
                                    state, event_at, change_id, reason)
    SELECT DISTINCT ON (n.venue_id, n.provider, n.entity_type, n.remote_id)
           n.venue_id, n.provider, n.entity_type, n.remote_id, n.local_id, 'withdrawn',
           coalesce(n.occurred_at, n.received_at), n.id,
           CASE WHEN n.payload ->> 'type' = 'cleaned' OR n.payload ->> 'status' = 'cleaned'
                THEN 'address cleaned' ELSE 'unsubscribed' END
      FROM new_changes n
     WHERE n.change = 'unsubscribed'
     ORDER BY n.venue_id, n.provider, n.entity_type, n.remote_id,
              coalesce(n.occurred_at, n.received_at) DESC, n.id DESC
    ON CONFLICT (venue_id, provider, entity_type, remote_id) DO UPDATE SET
        state = 'withdrawn', event_at = EXCLUDED.event_at, change_id = EXCLUDED.change_id,
        reason = EXCLUDED.reason, local_id = coalesce(EXCLUDED.local_id, h.local_id),
        platform_opt_in = NULL, lifted_at = NULL, lifted_reason = NULL, updated_at = now()
     WHERE h.event_at <= EXCLUDED.event_at;
    UPDATE consent_holds h
       SET state = 'given', event_at = s.at, change_id = s.id,
           lifted_at = now(), lifted_reason = 'subscribed again at the provider',
           updated_at = now()
      FROM (SELECT DISTINCT ON (n.venue_id, n.provider, n.entity_type, n.remote_id)
                   n.venue_id, n.provider, n.entity_type, n.remote_id, n.id,
                   coalesce(n.occurred_at, n.received_at) AS at
              FROM new_changes n
             WHERE n.change = 'subscribed'
             ORDER BY n.venue_id, n.provider, n.entity_type, n.remote_id,
                      coalesce(n.occurred_at, n.received_at) DESC, n.id DESC) s
     WHERE h.venue_id = s.venue_id AND h.provider = s.provider
       AND h.entity_type = s.entity_type AND h.remote_id = s.remote_id
       AND h.event_at < s.at;
    RETURN NULL;
END
$$;
CREATE TRIGGER inbound_changes_consent AFTER INSERT ON inbound_changes
    REFERENCING NEW TABLE AS new_changes
    FOR EACH STATEMENT EXECUTE FUNCTION syncd_inbound_consent();

-- Unsubscribes stored before this migration hold too: per remote record, its latest
-- subscribe or unsubscribe, when that is an unsubscribe.
INSERT INTO consent_holds (venue_id, provider, entity_type, remote_id, local_id, state,
                           event_at, change_id, reason)
SELECT l.venue_id, l.provider, l.entity_type, l.remote_id, l.local_id, 'withdrawn', l.at, l.id,
       'unsubscribed (recorded before consent holds existed)'
  FROM (SELECT DISTINCT ON (venue_id, provider, entity_type, remote_id)
               venue_id, provider, entity_type, remote_id, local_id, change, id,
               coalesce(occurred_at, received_at) AS at
          FROM inbound_changes
         WHERE change IN ('unsubscribed', 'subscribed')
         ORDER BY venue_id, provider, entity_type, remote_id,
                  coalesce(occurred_at, received_at) DESC, id DESC) l
 WHERE l.change = 'unsubscribed';
