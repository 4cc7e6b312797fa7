/**
 * Auto-registration in batches. A storm of first connections of one tenant (a fleet powered on at
 * once) registers hundreds of devices a second; one transaction per device, each waiting for the
 * tenant's advisory lock, held a pooled connection per waiting device and ran out of connections
 * and time. Here the registrations of a tenant that arrive while its previous batch is written wait
 * in memory, and are then written together: one transaction, one lock, one INSERT for the batch.
 * The lock stays per tenant (it is what makes the hourly quota exact across processes): each
 * process writes at most one batch per tenant at a time.
 */
import type { PgTransaction } from '../db/prisma.js';
import type { DeviceRef } from './verifier-repository.js';

export interface RegistrationRequest {
  tenantId: string;
  name: string;
  profile: { id: string; maxNewDevicesPerHour: number | null };
  /** The decision's time: the quota counts the devices registered in the hour before it. */
  now: Date;
}

/** The device (`created`: by this registration), or why there is none. */
export type RegistrationResult = { device: DeviceRef; created: boolean } | 'QUOTA_EXCEEDED' | 'GONE';

/** Registrations per transaction at most; more wait for the next one. */
const MAX_BATCH = 500;

interface Waiting extends RegistrationRequest {
  resolve(result: RegistrationResult): void;
  reject(err: unknown): void;
}

/**
 * Gathers registrations per tenant: the first starts a batch at the end of the current turn (so a
 * burst that arrived together is written together), later ones wait for the batch being written
 * and go in the next. `write` answers one result per request, in order.
 */
export function createRegistrationBatches(write: (batch: RegistrationRequest[]) => Promise<RegistrationResult[]>) {
  const tenants = new Map<string, Waiting[]>();

  const run = async (tenantId: string, waiting: Waiting[]): Promise<void> => {
    while (waiting.length) {
      const batch = waiting.splice(0, MAX_BATCH);
      try {
        const results = await write(batch.map(({ tenantId, name, profile, now }) => ({ tenantId, name, profile, now })));
        batch.forEach((w, i) => w.resolve(results[i]!));
      } catch (err) {
        for (const w of batch) w.reject(err);
      }
    }
    tenants.delete(tenantId);
  };

  return {
    register(request: RegistrationRequest): Promise<RegistrationResult> {
      return new Promise((resolve, reject) => {
        const waiting = tenants.get(request.tenantId);
        if (waiting) {
          waiting.push({ ...request, resolve, reject });
          return;
        }
        const fresh: Waiting[] = [{ ...request, resolve, reject }];
        tenants.set(request.tenantId, fresh);
        setImmediate(() => void run(request.tenantId, fresh));
      });
    },
  };
}

/** A `DeviceRef` from `"Device" d`. */
const DEVICE = `d.id::text AS id, d."tenantId", d.name, d.status::text AS status, d."pinCredentials",
       d."deviceProfileId"::text AS "deviceProfileId", d."createdBy"::text AS "createdBy"`;

/**
 * Writes one batch of registrations of one tenant in the transaction `tx`: under the tenant's
 * advisory lock (the key every process uses), the devices that exist are found, the quota of each
 * profile is counted once and shared out in the order the requests came, and the rest are
 * inserted by one statement. A device the API created meanwhile (the API does not take the lock)
 * is read back instead. The tenant and the profiles are locked against deletion until commit; a
 * tenant or profile already gone answers 'GONE' for its requests.
 */
export async function registerBatch(tx: PgTransaction, batch: readonly RegistrationRequest[]): Promise<RegistrationResult[]> {
  if (!batch.length) return [];
  const tenantId = batch[0]!.tenantId;
  if (batch.some((r) => r.tenantId !== tenantId)) throw new Error('a registration batch is of one tenant');
  await tx.query({ text: 'SELECT pg_advisory_xact_lock(hashtext($1))', values: [`certgate-register:${tenantId}`] });
  const tenant = await tx.query({ text: `SELECT id FROM "Tenant" WHERE id = $1 FOR KEY SHARE`, values: [tenantId] });
  if (tenant.length === 0) return batch.map(() => 'GONE');

  const profileIds = [...new Set(batch.map((r) => r.profile.id))].sort();
  const liveProfiles = new Set(
    (
      await tx.query<{ id: string }>({
        text: `SELECT id::text AS id FROM "DeviceProfile" WHERE id = ANY($1::uuid[]) AND "tenantId" = $2 ORDER BY id FOR KEY SHARE`,
        values: [profileIds, tenantId],
      })
    ).map((p) => p.id),
  );
  const names = [...new Set(batch.map((r) => r.name))];
  const existing = await tx.query<DeviceRef>({
    text: `SELECT ${DEVICE} FROM "Device" d WHERE d."tenantId" = $1 AND d.name = ANY($2::text[])`,
    values: [tenantId, names],
  });

  // One outcome per name, decided by its first request.
  const outcome = new Map<string, RegistrationResult | 'CREATE'>(existing.map((d) => [d.name, { device: d, created: false }]));
  const quotaLeft = new Map<string, number>();
  const toCreate: Array<{ name: string; profileId: string }> = [];
  for (const r of batch) {
    if (outcome.has(r.name)) continue;
    if (!liveProfiles.has(r.profile.id)) {
      outcome.set(r.name, 'GONE');
      continue;
    }
    const max = r.profile.maxNewDevicesPerHour;
    if (max !== null) {
      let left = quotaLeft.get(r.profile.id);
      if (left === undefined) {
        const [row] = await tx.query<{ n: number }>({
          text: `SELECT count(*)::int AS n FROM "Device"
                  WHERE "tenantId" = $1 AND "deviceProfileId" = $2::uuid AND "createdBy" = 'AUTO_REGISTRATION' AND "creationTime" > $3`,
          values: [tenantId, r.profile.id, new Date(r.now.getTime() - 3_600_000)],
        });
        left = max - (row?.n ?? 0);
      }
      if (left <= 0) {
        quotaLeft.set(r.profile.id, 0);
        outcome.set(r.name, 'QUOTA_EXCEEDED');
        continue;
      }
      quotaLeft.set(r.profile.id, left - 1);
    }
    outcome.set(r.name, 'CREATE');
    toCreate.push({ name: r.name, profileId: r.profile.id });
  }

  if (toCreate.length) {
    // In name order, as every process inserts: two batches meeting on the unique index wait for
    // each other instead of deadlocking.
    toCreate.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const created = await tx.query<DeviceRef>({
      text: `INSERT INTO "Device" AS d (id, "tenantId", name, "deviceProfileId", "createdBy")
             SELECT gen_random_uuid(), $1, v.name, v.profile, 'AUTO_REGISTRATION'::"DeviceOrigin"
               FROM unnest($2::text[], $3::uuid[]) WITH ORDINALITY AS v(name, profile, n)
              ORDER BY v.n
             ON CONFLICT ("tenantId", name) DO NOTHING
             RETURNING ${DEVICE}`,
      values: [tenantId, toCreate.map((c) => c.name), toCreate.map((c) => c.profileId)],
    });
    for (const d of created) outcome.set(d.name, { device: d, created: true });
    const raced = toCreate.filter((c) => outcome.get(c.name) === 'CREATE').map((c) => c.name);
    if (raced.length) {
      const found = await tx.query<DeviceRef>({
        text: `SELECT ${DEVICE} FROM "Device" d WHERE d."tenantId" = $1 AND d.name = ANY($2::text[])`,
        values: [tenantId, raced],
      });
      for (const d of found) outcome.set(d.name, { device: d, created: false });
    }
  }
  return batch.map((r) => {
    const o = outcome.get(r.name);
    // Created by the API and deleted again within this transaction: as if the tenant's state changed.
    return o === undefined || o === 'CREATE' ? 'GONE' : o;
  });
}
