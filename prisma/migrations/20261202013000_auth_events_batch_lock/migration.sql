-- Auth events are written in batches by the verifier (COPY). A foreign key checks and locks the
-- tenant once per row, which cost PostgreSQL more than the row itself; the verifier now takes one
-- KEY SHARE lock per tenant and batch and writes only the events of tenants that exist, and these
-- triggers keep what the key's cascades did: a tenant's events go with the tenant.

-- DropForeignKey
ALTER TABLE "AuthEvent" DROP CONSTRAINT "AuthEvent_tenantId_fkey";

-- A tenant deleted takes its auth events with it (was ON DELETE CASCADE).
CREATE FUNCTION "certgate_tenant_auth_events"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    DELETE FROM "AuthEvent" WHERE "tenantId" = OLD."id";
    RETURN OLD;
  END IF;
  -- A tenant id changed (was ON UPDATE CASCADE).
  UPDATE "AuthEvent" SET "tenantId" = NEW."id" WHERE "tenantId" = OLD."id";
  RETURN NEW;
END
$$;

CREATE TRIGGER "Tenant_auth_events_delete" AFTER DELETE ON "Tenant"
  FOR EACH ROW EXECUTE FUNCTION "certgate_tenant_auth_events"();
CREATE TRIGGER "Tenant_auth_events_update" AFTER UPDATE OF "id" ON "Tenant"
  FOR EACH ROW WHEN (OLD."id" IS DISTINCT FROM NEW."id") EXECUTE FUNCTION "certgate_tenant_auth_events"();
