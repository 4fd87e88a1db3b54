-- The durable inbox (feature `inbox`). Three tables, so that privileges alone keep the request
-- role from seeing other orgs' entries while workers can schedule across orgs:
--
-- * inbox: the delivery log and the encrypted bodies, org data under forced RLS;
-- * inbox_queue: what is left to run (ids, orgs, times; no body, no type), for workers only;
--   the request role may only INSERT into it;
-- * inbox_orgs: when each org was last served, for fair claiming and for purging; workers only.
CREATE TABLE vapi_webhooks.inbox (
    id              uuid        PRIMARY KEY,
    org_id          uuid        NOT NULL,
    -- Identifies the delivery: the same for a sender's retry or a replay of it.
    delivery_key    bytea       NOT NULL,
    message_type    text        NOT NULL,
    call_id         text,
    tenant_key_kind text        NOT NULL,
    tenant_key      text        NOT NULL,
    key_source      text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'processing', 'done', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    -- AES-256-GCM; the associated data binds the ciphertext to (org_id, id).
    body_ciphertext bytea       NOT NULL,
    body_nonce      bytea       NOT NULL CHECK (octet_length(body_nonce) = 12),
    key_id          text        NOT NULL,
    UNIQUE (org_id, delivery_key)
);
CREATE INDEX inbox_org_received ON vapi_webhooks.inbox (org_id, received_at DESC);
CREATE INDEX inbox_finished ON vapi_webhooks.inbox (org_id, finished_at) WHERE finished_at IS NOT NULL;
ALTER TABLE vapi_webhooks.inbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE vapi_webhooks.inbox FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON vapi_webhooks.inbox
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);

CREATE TABLE vapi_webhooks.inbox_queue (
    id          uuid        PRIMARY KEY REFERENCES vapi_webhooks.inbox (id) ON DELETE CASCADE,
    org_id      uuid        NOT NULL,
    seq         bigserial   NOT NULL,
    run_after   timestamptz NOT NULL DEFAULT now(),
    attempts    integer     NOT NULL DEFAULT 0,
    -- Set by a claim: until lease_until, the entry belongs to the claim `token`.
    token       uuid,
    lease_until timestamptz
);
CREATE INDEX inbox_queue_org_ready ON vapi_webhooks.inbox_queue (org_id, run_after, seq);

CREATE TABLE vapi_webhooks.inbox_orgs (
    org_id         uuid        PRIMARY KEY,
    last_served_at timestamptz NOT NULL
);

-- A queue's head is all dead rows (every claim updates one, every completion deletes one) and
-- each claim scans past them: vacuum these small tables early and without throttling.
ALTER TABLE vapi_webhooks.inbox_queue SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0, fillfactor = 70);
ALTER TABLE vapi_webhooks.inbox_orgs SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0, fillfactor = 50);
