import { CopyText, copyField } from '../db/copy-text.js';
import { executeBulk, pgTransaction, queryBulk, sqlOf, type PrismaClient } from '../db/prisma.js';
import { credentialsObserved, type ChangeEvent, type SqlExecutor } from '../db/change-feed.js';
import { createRegistrationBatches, registerBatch, type RegistrationResult } from './registration-batches.js';

/** Everything the verifier reads and writes, in one place (Prisma, and `pg` for batch writes). */
export interface TrustedRef {
  id: string;
  tenantId: string;
  fingerprint: string;
  status: 'ENABLED' | 'DISABLED';
  autoRegistrationEnabled: boolean;
  deviceProfileId: string | null;
  certDer: Uint8Array;
  /** The tenant proved it holds the certificate's private key. */
  popValid: boolean;
  /** When the tenant began to trust the certificate: the earlier copy of a shared CA wins. */
  creationTime: Date;
}

export interface DeviceRef {
  id: string;
  tenantId: string;
  name: string;
  status: 'ACTIVE' | 'DISABLED';
  pinCredentials: boolean;
  deviceProfileId: string;
  createdBy: 'API' | 'AUTO_REGISTRATION';
}

export interface CredentialRef {
  credentialsId: string;
  tenantId: string;
  deviceId: string;
  status: 'ACTIVE' | 'REVOKED';
  source: 'API' | 'OBSERVED';
}

export interface ProfileRef {
  id: string;
  isDefault: boolean;
  identitySource: 'COMMON_NAME' | 'SAN_URI' | 'SAN_DNS';
  identityPattern: string;
  identityUriPrefix: string | null;
  clientIdPolicy: 'MUST_MATCH_DEVICE_NAME' | 'ANY';
  maxNewDevicesPerHour: number | null;
  aclPublish: string[];
  aclSubscribe: string[];
  aclDenyPublish: string[];
  aclDenySubscribe: string[];
}

export interface RevocationRef {
  serialHex: string;
  issuerFingerprint: string;
}

export interface AuthEventRow {
  tenantId: string;
  time: Date;
  result: string;
  reason?: string;
  message: string;
  clientId?: string;
  deviceId?: string;
  deviceName?: string;
  fingerprint?: string;
}

export interface ObservedLeaf {
  credentialsId: string;
  tenantId: string;
  deviceId: string;
  certDer: Uint8Array;
  subject: string;
  issuer: string;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  seenAt: Date;
}

/** A `DeviceRef` from `"Device" d`, for the statements that bypass Prisma. */
const DEVICE_COLUMNS = `SELECT d.id::text AS id, d."tenantId", d.name, d.status::text AS status, d."pinCredentials",
       d."deviceProfileId"::text AS "deviceProfileId", d."createdBy"::text AS "createdBy"`;

export type VerifierPrisma = Pick<
  PrismaClient,
  '$transaction' | '$executeRawUnsafe' | '$queryRawUnsafe' | 'tenant' | 'trustedCertificate' | 'device' | 'deviceCredential' | 'deviceProfile' | 'revokedSerial' | 'authEvent'
>;

/** An auth event as a line of COPY's text format, its tenant id first: what `insertAuthEvents` writes. */
export type EncodedAuthEvent = string & { readonly __encoded: 'AuthEvent' };

/** The columns of an encoded auth event, in order: the tenant id, the time, then these. */
const AUTH_EVENT_TAIL = ['result', 'reason', 'message', 'clientId', 'deviceId', 'deviceName', 'fingerprint'] as const;
const COPY_AUTH_EVENTS = `COPY "AuthEvent" (${['tenantId', 'time', ...AUTH_EVENT_TAIL].map((c) => `"${c}"`).join(', ')}) FROM STDIN`;

/** Encodes one auth event for `insertAuthEvents`. */
export function encodeAuthEvent(row: AuthEventRow): EncodedAuthEvent {
  return authEventEncoder(row)(row.time);
}

/**
 * The encoder of the auth events of one repeated decision: everything but the time is the same
 * every time, so it is encoded once and each event costs the time's text alone.
 */
export function authEventEncoder(row: Omit<AuthEventRow, 'time'>): (time: Date) => EncodedAuthEvent {
  const head = `${copyField(row.tenantId)}\t`;
  const tail = `\t${AUTH_EVENT_TAIL.map((c) => copyField(row[c])).join('\t')}\n`;
  return (time) => `${head}${time.toISOString()}${tail}` as EncodedAuthEvent;
}

/** Devices the profile auto-registered in the hour before `now`: what its hourly quota counts. */
function recentRegistrations(db: Pick<VerifierPrisma, 'device'>, tenantId: string, profileId: string, now: Date): Promise<number> {
  return db.device.count({
    where: { tenantId, deviceProfileId: profileId, createdBy: 'AUTO_REGISTRATION', creationTime: { gt: new Date(now.getTime() - 3_600_000) } },
  });
}

const trustedSelect = {
  id: true,
  tenantId: true,
  fingerprint: true,
  status: true,
  autoRegistrationEnabled: true,
  deviceProfileId: true,
  certDer: true,
  popValid: true,
  creationTime: true,
  subjectHash: true,
} as const;

/** How often a process deletes the batch ids older than a day (with the next batch it writes). */
const BATCH_PRUNE_INTERVAL_MS = 3_600_000;

/** Registered devices named per change event (about 100 bytes each). */
const DEVICES_PER_EVENT = 40;

export interface VerifierRepositoryOptions {
  /**
   * Announces the devices a registration batch created, in the batch's own transaction, so the
   * registrations and their announcement commit together (see src/db/change-feed.ts).
   */
  announce?: (events: ChangeEvent[], db: SqlExecutor) => Promise<void>;
}

/** A device id as PostgreSQL's uuid type reads it: anything else names no device. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function createVerifierRepository(prisma: VerifierPrisma, options: VerifierRepositoryOptions = {}) {
  let lastBatchPrune = 0;
  const registrations = createRegistrationBatches((batch) =>
    pgTransaction(prisma, async (tx) => {
      const results = await registerBatch(tx, batch);
      const created = results.flatMap((r) => (typeof r === 'object' && r.created ? [{ id: r.device.id, name: r.device.name }] : []));
      if (created.length && options.announce) {
        // Devices in events of a few dozen, so each notification carries its events: one too large
        // would arrive without them and count as every change (caches dropped, sessions re-checked).
        const events: ChangeEvent[] = [];
        for (let i = 0; i < created.length; i += DEVICES_PER_EVENT) {
          events.push({ type: 'invalidate', tenantId: batch[0]!.tenantId, what: 'devices', devices: created.slice(i, i + DEVICES_PER_EVENT) });
        }
        await options.announce(events, sqlOf(tx));
      }
      return results;
    }),
  );
  return {
    trustedBySubjectHash(subjectHashes: string[]): Promise<Array<TrustedRef & { subjectHash: string }>> {
      return prisma.trustedCertificate.findMany({
        where: { subjectHash: { in: subjectHashes } },
        select: trustedSelect,
      });
    },

    trustedOfTenant(tenantId: string): Promise<Array<TrustedRef & { subjectHash: string }>> {
      return prisma.trustedCertificate.findMany({
        where: { tenantId },
        select: trustedSelect,
      });
    },

    tenantStatus(tenantId: string): Promise<{ status: 'ACTIVE' | 'SUSPENDED' } | null> {
      return prisma.tenant.findUnique({ where: { id: tenantId }, select: { status: true } });
    },

    profiles(tenantId: string): Promise<ProfileRef[]> {
      return prisma.deviceProfile.findMany({
        where: { tenantId },
        select: {
          id: true,
          isDefault: true,
          identitySource: true,
          identityPattern: true,
          identityUriPrefix: true,
          clientIdPolicy: true,
          maxNewDevicesPerHour: true,
          aclPublish: true,
          aclSubscribe: true,
          aclDenyPublish: true,
          aclDenySubscribe: true,
        },
      });
    },

    async deviceByName(tenantId: string, name: string): Promise<DeviceRef | null> {
      const [row] = await queryBulk<DeviceRef>(
        prisma,
        { name: 'certgate_device_by_name', text: `${DEVICE_COLUMNS} FROM "Device" d WHERE d."tenantId" = $1 AND d.name = $2` },
        [tenantId, name],
      );
      return row ?? null;
    },

    /** How many devices the tenant has (an index-only count over its unique names). */
    async deviceCount(tenantId: string): Promise<number> {
      const [row] = await queryBulk<{ n: number }>(
        prisma,
        { name: 'certgate_device_count', text: `SELECT count(*)::int AS n FROM "Device" WHERE "tenantId" = $1` },
        [tenantId],
      );
      return row?.n ?? 0;
    },

    /** One page of a tenant's devices in name order after `after` (keyset paging over the unique index). */
    devicesOfTenant(tenantId: string, after: string, limit: number): Promise<DeviceRef[]> {
      return queryBulk<DeviceRef>(
        prisma,
        {
          name: 'certgate_devices_of_tenant',
          text: `${DEVICE_COLUMNS}
           FROM "Device" d WHERE d."tenantId" = $1 AND d.name > $2 ORDER BY d.name LIMIT $3`,
        },
        [tenantId, after, limit],
      );
    },

    async deviceById(id: string): Promise<DeviceRef | null> {
      if (!UUID.test(id)) return null;
      const [row] = await queryBulk<DeviceRef>(
        prisma,
        { name: 'certgate_device_by_id', text: `${DEVICE_COLUMNS} FROM "Device" d WHERE d.id = $1::uuid` },
        [id.toLowerCase()],
      );
      return row ?? null;
    },

    async credential(credentialsId: string): Promise<CredentialRef | null> {
      const [row] = await queryBulk<CredentialRef>(
        prisma,
        {
          name: 'certgate_credential_by_id',
          text: `SELECT "credentialsId", "tenantId", "deviceId"::text AS "deviceId", status::text AS status, source::text AS source
                   FROM "DeviceCredential" WHERE "credentialsId" = $1`,
        },
        [credentialsId],
      );
      return row ?? null;
    },

    /** The API-listed, active certificates of a device: what a pinned device may use. */
    async pinnedCredentialIds(deviceId: string): Promise<Set<string>> {
      const rows = await prisma.deviceCredential.findMany({
        where: { deviceId, status: 'ACTIVE', source: 'API' },
        select: { credentialsId: true },
      });
      return new Set(rows.map((r) => r.credentialsId));
    },

    revokedCredentials(tenantId: string): Promise<Array<{ issuer: string; serialNumber: string }>> {
      return prisma.deviceCredential.findMany({
        where: { tenantId, status: 'REVOKED' },
        select: { issuer: true, serialNumber: true },
      });
    },

    /**
     * The tenant's serial holds. Past Prisma's pipeline: a tenant that imported a CRL of 100,000
     * entries has as many rows, read in ~0.3 s instead of ~1.3 s of this process's thread (measured
     * on the loaded 2-core machine), while other tenants' decisions wait for it.
     */
    revocations(tenantId: string): Promise<RevocationRef[]> {
      return queryBulk<RevocationRef>(
        prisma,
        {
          name: 'certgate_tenant_revocations',
          text: `SELECT "serialHex" AS "serialHex", "issuerFingerprint" AS "issuerFingerprint" FROM "RevokedSerial" WHERE "tenantId" = $1`,
        },
        [tenantId],
      );
    },

    /** Whether the profile's hourly quota is used up: for a dry run (`registerDevice` decides under its lock). */
    async registrationQuotaReached(tenantId: string, profile: { id: string; maxNewDevicesPerHour: number | null }, now: Date): Promise<boolean> {
      if (profile.maxNewDevicesPerHour === null) return false;
      return (await recentRegistrations(prisma, tenantId, profile.id, now)) >= profile.maxNewDevicesPerHour;
    },

    /**
     * Creates the device unless it exists. Concurrent registrations of one tenant are gathered
     * while the tenant's previous batch is written and then written together, in one transaction
     * under the tenant's advisory lock (registration-batches.ts): a storm of first connections
     * costs a transaction per batch, not one per device queued behind that lock, and the hourly
     * quota holds exactly because it is counted under the lock. Answers the device (`created`: by
     * this call), 'QUOTA_EXCEEDED', or 'GONE' when the tenant or the profile no longer exists
     * (deleted by another process a moment ago).
     */
    registerDevice(
      tenantId: string,
      name: string,
      profile: { id: string; maxNewDevicesPerHour: number | null },
      now: Date,
    ): Promise<RegistrationResult> {
      return registrations.register({ tenantId, name, profile, now });
    },

    /**
     * One COPY per batch, after one KEY SHARE lock per tenant in it: what a foreign key would check
     * and lock on every row (Prisma's createMany compiles a query per row, and a JSON parameter
     * costs PostgreSQL more to parse than the rows cost to insert).
     *
     * `batchId` names the batch across attempts: it is recorded in the same transaction, so a batch
     * tried again after a lost connection (whose COMMIT may have gone through) is written once.
     * A second attempt racing a first one still running on the server waits for its outcome at
     * the unique index.
     */
    async insertAuthEvents(rows: readonly EncodedAuthEvent[], batchId?: string): Promise<void> {
      if (!rows.length) return;
      // A line's first field is its tenant id as is: tenant ids (^[a-z][a-z0-9-]+$) need no escaping.
      const tenantOf = (line: string) => line.slice(0, line.indexOf('\t'));
      const prune = batchId !== undefined && Date.now() - lastBatchPrune > BATCH_PRUNE_INTERVAL_MS;
      if (prune) lastBatchPrune = Date.now();
      await pgTransaction(prisma, async (tx) => {
        if (batchId !== undefined) {
          const fresh = await tx.query({
            text: `INSERT INTO "RecordedBatch" (id) VALUES ($1::uuid) ON CONFLICT DO NOTHING RETURNING 1 AS fresh`,
            values: [batchId],
          });
          if (fresh.length === 0) return;
          if (prune) await tx.query({ text: `DELETE FROM "RecordedBatch" WHERE "createdAt" < now() - interval '1 day'` });
        }
        // A tenant deleted since the decision takes its events with it, not the rest of the batch;
        // the lock keeps each tenant kept here from being deleted before the events are in.
        const live = await tx.query<{ id: string }>({
          text: `SELECT id FROM "Tenant" WHERE id = ANY($1::text[]) ORDER BY id FOR KEY SHARE`,
          values: [[...new Set(rows.map(tenantOf))]],
        });
        const kept = new Set(live.map((t) => t.id));
        const data = new CopyText(rows.length * 256);
        for (const line of rows) if (kept.has(tenantOf(line))) data.lines(line);
        await tx.copy(COPY_AUTH_EVENTS, data.bytes());
      });
    },

    /**
     * Records leaves that authenticated through a trusted CA; rows that exist get `lastSeenAt`.
     * One statement per batch (ids must be distinct within it); a leaf whose device was deleted
     * meanwhile is skipped rather than failing the batch.
     */
    async recordObserved(leaves: ObservedLeaf[]): Promise<void> {
      if (!leaves.length) return;
      // Rows are locked in the order given: every process gives them in id order, so two batches
      // touching the same credentials wait for each other instead of deadlocking.
      const sorted = [...leaves].sort((a, b) => (a.credentialsId < b.credentialsId ? -1 : a.credentialsId > b.credentialsId ? 1 : 0));
      // Ids, serials (hex), device ids (UUIDs) and tenant ids (^[a-z][a-z0-9-]+$) need no escaping.
      const data = new CopyText(sorted.length * 1_600);
      for (const l of sorted) {
        data.plain(l.credentialsId).plain(l.tenantId).plain(l.deviceId).bytea(l.certDer).text(l.subject).text(l.issuer);
        data.plain(l.serialNumber).time(l.notBefore).time(l.notAfter).time(l.seenAt).row();
      }
      await pgTransaction(prisma, async (tx) => {
        // Staged by COPY in a table of this connection's own (emptied at commit), then merged.
        await tx.query({
          text: `CREATE TEMP TABLE IF NOT EXISTS certgate_sightings (id text, tenant text, device uuid, der bytea, subject text, issuer text,
                   serial text, nb timestamptz, na timestamptz, seen timestamptz) ON COMMIT DELETE ROWS`,
        });
        await tx.copy('COPY certgate_sightings FROM STDIN', data.bytes());
        // The devices that still exist are looked up by their ids (a join against the staged rows,
        // which have no statistics, was planned as a hash join over a scan of every device of
        // every tenant: 40 ms per batch with 200,000 devices) and locked as the foreign key would
        // lock them, all at once and in id order: each row's key check then finds its device
        // locked already (~5 µs less per row with a device per row), and a device deleted
        // meanwhile drops out here instead of failing the batch at its key check.
        const rows = await tx.query<{ credentialsId: string; tenantId: string; inserted: boolean }>({
          text: `WITH live AS (SELECT id FROM "Device" WHERE id = ANY($1::uuid[]) ORDER BY id FOR KEY SHARE)
                 INSERT INTO "DeviceCredential" ("credentialsId", "tenantId", "deviceId", "certDer", "subject", "issuer", "serialNumber",
                                                 "notBefore", "notAfter", "source", "firstSeenAt", "lastSeenAt")
                 SELECT v.id, v.tenant, v.device, v.der, v.subject, v.issuer, v.serial, v.nb, v.na, 'OBSERVED'::"CredentialSource", v.seen, v.seen
                   FROM certgate_sightings v JOIN live ON live.id = v.device
                  ORDER BY v.id
                 ON CONFLICT ("credentialsId") DO UPDATE
                    SET "lastSeenAt" = GREATEST(COALESCE("DeviceCredential"."lastSeenAt", EXCLUDED."lastSeenAt"), EXCLUDED."lastSeenAt")
                 RETURNING "credentialsId", "tenantId", (xmax = 0) AS inserted`,
          values: [[...new Set(sorted.map((l) => l.deviceId))]],
        });
        // A credential new to the database changes how its leaf resolves (by the credential, not
        // by the path), so it is a change like any other: counted and announced in this
        // transaction. A sighting of a known credential only moves its lastSeenAt and announces
        // nothing.
        const fresh = new Map<string, string[]>();
        for (const r of rows) {
          if (!r.inserted) continue;
          const ids = fresh.get(r.tenantId);
          if (ids) ids.push(r.credentialsId);
          else fresh.set(r.tenantId, [r.credentialsId]);
        }
        if (fresh.size && options.announce) {
          const events = [...fresh].flatMap(([tenantId, ids]) => credentialsObserved(tenantId, ids).flat());
          await options.announce(events, sqlOf(tx));
        }
      });
    },

    /**
     * Credential ids in key order after `after`, at most `limit` (keyset paging over the primary
     * key), of one tenant or of all: what the verifier's in-memory credential index is built from.
     */
    async credentialIds(after: string, limit: number, tenantId?: string): Promise<string[]> {
      const rows = tenantId
        ? await prisma.$queryRawUnsafe<Array<{ id: string }>>(
            `SELECT "credentialsId" AS id FROM "DeviceCredential" WHERE "tenantId" = $1 AND "credentialsId" > $2 ORDER BY "credentialsId" LIMIT $3`,
            tenantId,
            after,
            limit,
          )
        : await prisma.$queryRawUnsafe<Array<{ id: string }>>(
            `SELECT "credentialsId" AS id FROM "DeviceCredential" WHERE "credentialsId" > $1 ORDER BY "credentialsId" LIMIT $2`,
            after,
            limit,
          );
      return rows.map((r) => r.id);
    },

    /**
     * One UPDATE for a whole batch of connections (an MQTT connection storm). Every listener
     * process writes such batches: the rows are locked first, in id order, so two batches
     * sharing devices wait for each other instead of deadlocking (the join alone locks in
     * whatever order its plan visits them).
     */
    async touchDevices(batch: Map<string, Date>): Promise<void> {
      if (!batch.size) return;
      await executeBulk(
        prisma,
        {
          name: 'certgate_touch_devices',
          text: `WITH v AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, t)),
              locked AS (SELECT d.id FROM "Device" d JOIN v ON v.id = d.id ORDER BY d.id FOR NO KEY UPDATE OF d)
         UPDATE "Device" AS d SET "lastConnectedAt" = GREATEST(COALESCE(d."lastConnectedAt", v.t), v.t)
           FROM v JOIN locked USING (id)
          WHERE d.id = v.id`,
        },
        [[...batch.keys()], [...batch.values()]],
      );
    },
  };
}
export type VerifierRepository = ReturnType<typeof createVerifierRepository>;
