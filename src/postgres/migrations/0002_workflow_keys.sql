-- Workflow ids are tenant keys too (`message.call.workflowId`).
ALTER TABLE vapi_webhooks.tenant_keys DROP CONSTRAINT tenant_keys_kind_check;
ALTER TABLE vapi_webhooks.tenant_keys ADD CONSTRAINT tenant_keys_kind_check
    CHECK (kind IN ('assistant', 'squad', 'phone-number', 'workflow', 'vapi-org', 'slug'));
