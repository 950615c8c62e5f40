-- Provider limits every replica shares (daemon/ratelimit_shared.py, docs/limits.md).
--
-- An account is "<provider>:<account key>" (the key the plugin's client names its limiter
-- with: a host and an account id, never a secret). Its row carries a pause that a 429 with
-- Retry-After sets for every replica, and is the lock that makes each grant atomic.
CREATE TABLE rate_limit_accounts (
    account      text PRIMARY KEY,
    provider     text NOT NULL,
    paused_until timestamptz NOT NULL DEFAULT '-infinity',
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Token buckets refilled by time: the request rate, and each window quota as a bucket that
-- can never let more than the window's limit through in any window. Exact numbers: a token
-- count must not drift by rounding over millions of grants.
CREATE TABLE rate_limit_buckets (
    account     text NOT NULL REFERENCES rate_limit_accounts ON DELETE CASCADE,
    bucket      text NOT NULL,
    rate        numeric NOT NULL CHECK (rate > 0),
    capacity    numeric NOT NULL CHECK (capacity >= 1),
    tokens      numeric NOT NULL,
    refilled_at timestamptz NOT NULL,
    PRIMARY KEY (account, bucket)
);

-- Concurrency slots leased by a holder (one process); a lease the holder stops renewing
-- (the process died) expires and its slots free up.
CREATE TABLE rate_limit_slots (
    account    text NOT NULL REFERENCES rate_limit_accounts ON DELETE CASCADE,
    holder     text NOT NULL,
    slots      integer NOT NULL CHECK (slots >= 0),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (account, holder)
);
CREATE INDEX rate_limit_slots_holder ON rate_limit_slots (holder);

-- Lock an account's row, creating it on first use. Every grant and slot lease of an account
-- runs under this lock, one at a time; each statement after it sees what the last committed.
CREATE FUNCTION syncd_rate_lock(p_account text, p_provider text) RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
    pause timestamptz;
BEGIN
    SELECT paused_until INTO pause FROM rate_limit_accounts
     WHERE account = p_account FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO rate_limit_accounts (account, provider) VALUES (p_account, p_provider)
            ON CONFLICT (account) DO NOTHING;
        SELECT paused_until INTO pause FROM rate_limit_accounts
         WHERE account = p_account FOR UPDATE;
    END IF;
    RETURN pause;
END $$;

-- Take up to p_want tokens from every named bucket of the account at once (the fewest any
-- bucket holds). Answers how many were granted and, when none, how many seconds until one
-- can be (the pause's end, or the slowest bucket's next token).
CREATE FUNCTION syncd_rate_grant(
    p_account text, p_provider text, p_buckets text[], p_rates double precision[],
    p_capacities double precision[], p_want integer
) RETURNS TABLE (granted integer, wait_seconds double precision)
LANGUAGE plpgsql AS $$
DECLARE
    pause timestamptz := syncd_rate_lock(p_account, p_provider);
    t timestamptz := clock_timestamp();
    have numeric;
    avail numeric := p_want;
    need numeric := 0;
    n integer;
BEGIN
    IF pause > t THEN
        RETURN QUERY SELECT 0, extract(epoch FROM pause - t)::double precision;
        RETURN;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_buckets, 1), 0) LOOP
        INSERT INTO rate_limit_buckets AS b
               (account, bucket, rate, capacity, tokens, refilled_at)
        VALUES (p_account, p_buckets[i], p_rates[i]::numeric, p_capacities[i]::numeric,
                p_capacities[i]::numeric, t)
        ON CONFLICT (account, bucket) DO UPDATE
           SET tokens = least(excluded.capacity,
                              b.tokens + greatest(0, extract(epoch FROM t - b.refilled_at))
                                         * excluded.rate),
               rate = excluded.rate, capacity = excluded.capacity,
               refilled_at = greatest(b.refilled_at, t)
        RETURNING b.tokens INTO have;
        avail := least(avail, floor(have));
        IF have < 1 THEN
            need := greatest(need, (1 - have) / p_rates[i]::numeric);
        END IF;
    END LOOP;
    n := greatest(0, avail)::integer;
    IF n > 0 THEN
        UPDATE rate_limit_buckets SET tokens = tokens - n
         WHERE account = p_account AND bucket = ANY (p_buckets);
    END IF;
    RETURN QUERY SELECT n, need::double precision;
END $$;

-- Lease one concurrency slot of the account for p_holder when fewer than p_max are held by
-- live leases. Answers true when leased.
CREATE FUNCTION syncd_rate_take_slot(
    p_account text, p_provider text, p_holder text, p_max integer,
    p_lease_seconds double precision
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    used bigint;
BEGIN
    PERFORM syncd_rate_lock(p_account, p_provider);
    DELETE FROM rate_limit_slots
     WHERE account = p_account AND expires_at < clock_timestamp() - interval '10 minutes';
    SELECT coalesce(sum(slots), 0) INTO used FROM rate_limit_slots
     WHERE account = p_account AND expires_at > clock_timestamp();
    IF used >= p_max THEN
        RETURN false;
    END IF;
    INSERT INTO rate_limit_slots AS s (account, holder, slots, expires_at)
    VALUES (p_account, p_holder, 1,
            clock_timestamp() + make_interval(secs => p_lease_seconds))
    ON CONFLICT (account, holder) DO UPDATE
       SET slots = CASE WHEN s.expires_at > clock_timestamp() THEN s.slots + 1 ELSE 1 END,
           expires_at = excluded.expires_at;
    RETURN true;
END $$;

-- A grant and a slot in one round trip, for a request that needs both: the slot is leased
-- only when tokens were granted. Answers the grant and whether the slot was leased.
CREATE FUNCTION syncd_rate_acquire(
    p_account text, p_provider text, p_buckets text[], p_rates double precision[],
    p_capacities double precision[], p_want integer, p_holder text, p_max integer,
    p_lease_seconds double precision
) RETURNS TABLE (granted integer, wait_seconds double precision, slotted boolean)
LANGUAGE plpgsql AS $$
DECLARE
    g integer;
    w double precision;
BEGIN
    SELECT r.granted, r.wait_seconds INTO g, w
      FROM syncd_rate_grant(p_account, p_provider, p_buckets, p_rates, p_capacities,
                            p_want) AS r;
    IF g > 0 THEN
        RETURN QUERY SELECT g, w, syncd_rate_take_slot(p_account, p_provider, p_holder,
                                                       p_max, p_lease_seconds);
    ELSE
        RETURN QUERY SELECT g, w, false;
    END IF;
END $$;
