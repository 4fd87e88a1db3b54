-- Tenant keys (assistant, squad, phone number, Vapi org, slug) and the organisation that owns each.
-- Read before the organisation is known, so these tables are not org-scoped by RLS: protect them
-- with privileges (the application role needs SELECT only).
CREATE TABLE vapi_webhooks.tenant_keys (
    kind       text        NOT NULL CHECK (kind IN ('assistant', 'squad', 'phone-number', 'vapi-org', 'slug')),
    value      text        NOT NULL CHECK (value <> ''),
    org_id     uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, value)
);
CREATE INDEX tenant_keys_org_id ON vapi_webhooks.tenant_keys (org_id);

-- Credentials: the parameters in clear, the secret only as AES-256-GCM ciphertext whose
-- associated data binds it to (org_id, id).
CREATE TABLE vapi_webhooks.credentials (
    id                uuid        PRIMARY KEY,
    org_id            uuid        NOT NULL,
    kind              text        NOT NULL CHECK (kind IN ('hmac', 'secret-header', 'bearer', 'standard-webhooks')),
    params            jsonb       NOT NULL DEFAULT '{}'::jsonb
                                  CHECK (jsonb_typeof(params) = 'object' AND NOT params ? 'secret'),
    secret_ciphertext bytea       NOT NULL,
    secret_nonce      bytea       NOT NULL CHECK (octet_length(secret_nonce) = 12),
    key_id            text        NOT NULL,
    not_after         timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credentials_org_id ON vapi_webhooks.credentials (org_id);
