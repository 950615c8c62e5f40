-- When the provider last refused this record (a permanent failure: it answered, and did not
-- take the record). A create is keyed by the record's identity so that a retry after a lost
-- answer replays rather than duplicates; once a refusal is recorded the earlier attempt is
-- known to have left nothing, and the next create is a new request (its key includes this
-- time), not a replay of the refusal. A retryable failure (the answer was lost, the provider
-- may have committed) leaves it as it was.
ALTER TABLE entity_links ADD COLUMN refused_at timestamptz;
