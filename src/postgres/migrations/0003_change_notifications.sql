-- Every change to tenant keys or credentials, by this crate or by hand, is announced on the
-- channel `vapi_webhooks_changes` with the org id, so that caches in every process of a fleet
-- can drop what changed (see `postgres::watch_changes`).
CREATE FUNCTION vapi_webhooks.notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('vapi_webhooks_changes', OLD.org_id::text);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('vapi_webhooks_changes', NEW.org_id::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER tenant_keys_changed AFTER INSERT OR UPDATE OR DELETE ON vapi_webhooks.tenant_keys
    FOR EACH ROW EXECUTE FUNCTION vapi_webhooks.notify_change();
CREATE TRIGGER credentials_changed AFTER INSERT OR UPDATE OR DELETE ON vapi_webhooks.credentials
    FOR EACH ROW EXECUTE FUNCTION vapi_webhooks.notify_change();
