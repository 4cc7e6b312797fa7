import { pgTransaction, queryBulk, sqlOf, type PrismaClient } from '../../db/prisma.js';
import { MAX_PAYLOAD_BYTES, type ChangeEvent, type ChangePublisher } from '../../db/change-feed.js';
import { NotFoundError, UnprocessableError } from '../../errors.js';
import { parseCertificate } from '../../pki/certificate.js';
import { crlTimeProblem, parseCrlInSlices, serialLengthProblem, verifyCrlSignature } from '../../pki/crl.js';
import { normalizeSerialHex, type PutCrlInput } from './revocation-schemas.js';

export interface RevocationServiceDeps {
  prisma: Pick<PrismaClient, '$transaction' | '$queryRawUnsafe' | 'revokedSerial' | 'trustedCertificate'>;
  publisher: ChangePublisher;
  clock?: () => Date;
}

interface HoldEntry {
  serialHex: string;
  issuerFingerprint: string;
  revocationDate: Date;
}

/** Rows per statement when holds are written: a few tens of milliseconds of PostgreSQL's time each. */
const CHUNK = 5_000;
/**
 * Revocation writes running at once in one process. A CRL of 100,000 entries holds one pooled
 * connection for a second or two; bounded here, a burst of imports can never take the pool from
 * other tenants' requests and decisions (the pool has 10 connections by default).
 */
const MAX_CONCURRENT_WRITES = 2;
/** How far an issuer's clock may run ahead of certgate's when it writes a CRL's thisUpdate. */
const CRL_CLOCK_SKEW_MS = 5 * 60_000;

/**
 * One statement per chunk: the holds as three arrays, inserted or (when held already) given the
 * new revocation date, in serial order so that two writers of the same serials lock them in the
 * same order. Answers the serials that were not held before: only those can have live sessions.
 */
const UPSERT_HOLDS = `
  INSERT INTO "RevokedSerial" ("id", "tenantId", "serialHex", "issuerFingerprint", "revocationDate", "source")
  SELECT gen_random_uuid(), $1, v.serial, v.issuer, v.revoked, $2
    FROM unnest($3::text[], $4::text[], $5::timestamptz[]) AS v(serial, issuer, revoked)
   ORDER BY v.issuer COLLATE "C", v.serial COLLATE "C"
  ON CONFLICT ("tenantId", "serialHex", "issuerFingerprint") DO UPDATE
     SET "revocationDate" = EXCLUDED."revocationDate"
   WHERE "RevokedSerial"."revocationDate" IS DISTINCT FROM EXCLUDED."revocationDate"
  RETURNING "serialHex" AS "serialHex", "issuerFingerprint" AS "issuerFingerprint", (xmax = 0) AS inserted`;

/**
 * The holds as the API shows them (`RevokedSerial` in the OpenAPI document), oldest first: dates
 * as `toISOString` writes them, no `issuerFingerprint` for a hold on every CA.
 */
const LIST_BODY = {
  name: 'certgate_revoked_serials_json',
  text: `
  SELECT json_build_object('crls', COALESCE(json_agg(json_strip_nulls(json_build_object(
           'serialNumberInHex', r."serialHex",
           'revocationDate', to_char(r."revocationDate" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'issuerFingerprint', NULLIF(r."issuerFingerprint", ''),
           'source', CASE WHEN r."source" = 'CRL' THEN 'CRL' ELSE 'API' END))
         ORDER BY r."creationTime", r."serialHex"), '[]'::json))::text AS body
    FROM (SELECT "serialHex", "revocationDate", "issuerFingerprint", "source", "creationTime"
            FROM "RevokedSerial"
           WHERE "tenantId" = $1 AND ($2::text IS NULL OR "issuerFingerprint" = $2)
           ORDER BY "creationTime", "serialHex"
           LIMIT $3) r`,
};

/** How many holds of its CA a CRL import answers with (the API's largest page). */
export const IMPORT_RESPONSE_HOLDS = 2_000;

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Lets the event loop serve what waits (other tenants' decisions) before going on. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A queue of at most `max` tasks running at once. */
function limiter(max: number) {
  let running = 0;
  const waiting: Array<() => void> = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (running >= max) await new Promise<void>((resolve) => waiting.push(resolve));
    else running++;
    try {
      return await task();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  };
}

/** Serial holds and imported CRLs (a revoked serial closes its sessions at once). */
export function createRevocationService({ prisma, publisher, clock = () => new Date() }: RevocationServiceDeps) {
  /**
   * The revocations changed; and the sessions of newly held serials close, one change per serial
   * alone, else a few hundred serials per change (a NOTIFY payload stays under its size limit).
   */
  const events = (tenantId: string, serials: Array<{ serialHex: string; issuerFingerprint: string }>): ChangeEvent[] => {
    const out: ChangeEvent[] = [{ type: 'invalidate', tenantId, what: 'revocations' }];
    const byIssuer = new Map<string, string[]>();
    for (const s of serials) {
      const list = byIssuer.get(s.issuerFingerprint);
      if (list) list.push(s.serialHex);
      else byIssuer.set(s.issuerFingerprint, [s.serialHex]);
    }
    // A serial is at most 40 hex digits (RFC 5280 4.1.2.2): 43 octets in the JSON list.
    const perEvent = Math.floor((MAX_PAYLOAD_BYTES - 300 - tenantId.length) / 43);
    for (const [issuer, hexes] of byIssuer) {
      const scope = issuer ? { issuerFingerprint: issuer } : {};
      if (hexes.length === 1) {
        out.push({ type: 'session-drop', change: { kind: 'serial', tenantId, serialHex: hexes[0]!, ...scope } });
        continue;
      }
      for (let i = 0; i < hexes.length; i += perEvent) {
        out.push({ type: 'session-drop', change: { kind: 'serials', tenantId, serialHexes: hexes.slice(i, i + perEvent), ...scope } });
      }
    }
    return out;
  };

  const writes = limiter(MAX_CONCURRENT_WRITES);

  /**
   * The `{crls: [...]}` body of the tenant's holds (or of one CA's) as JSON text, written by
   * PostgreSQL: a CRL may hold 100,000 serials, which read as rows and serialized here took seconds
   * of this process's only thread; as one text they cost it a few milliseconds.
   */
  async function listBody(tenantId: string, issuerFingerprint: string | null = null, limit: number | null = null): Promise<string> {
    const [row] = await queryBulk<{ body: string }>(prisma, LIST_BODY, [tenantId, issuerFingerprint, limit]);
    return row?.body ?? '{"crls":[]}';
  }

  /**
   * Writes holds in set-based statements of CHUNK rows, all in one transaction (a CRL is held
   * whole or not at all), which locks nothing but this tenant's rows of the serials written:
   * other tenants' decisions read on. Then tells every process that the revocations changed and
   * which sessions to close.
   */
  async function upsertAll(tenantId: string, entries: HoldEntry[], source: 'API' | 'CRL'): Promise<void> {
    // One row per serial and issuer (a statement may not touch a row twice); the last date wins.
    const unique = new Map<string, HoldEntry>();
    for (const e of entries) unique.set(`${e.issuerFingerprint}/${e.serialHex}`, e);
    // Every writer locks rows in one order (issuer, then serial, by code unit as COLLATE "C"
    // compares), across its chunks too: two imports of overlapping CRLs then wait for each other
    // instead of deadlocking.
    const rows = [...unique.values()].sort((a, b) => compare(a.issuerFingerprint, b.issuerFingerprint) || compare(a.serialHex, b.serialHex));
    if (rows.length > CHUNK) await nextTurn();
    const added = await writes(() =>
      pgTransaction(prisma, async (tx) => {
        const out: Array<{ serialHex: string; issuerFingerprint: string }> = [];
        for (let i = 0; i < rows.length; i += CHUNK) {
          const chunk = rows.slice(i, i + CHUNK);
          const result = await tx.query<{ serialHex: string; issuerFingerprint: string; inserted: boolean }>({
            text: UPSERT_HOLDS,
            values: [tenantId, source, chunk.map((e) => e.serialHex), chunk.map((e) => e.issuerFingerprint), chunk.map((e) => e.revocationDate)],
          });
          for (const r of result) if (r.inserted) out.push({ serialHex: r.serialHex, issuerFingerprint: r.issuerFingerprint });
        }
        // The holds and their announcement commit together (see src/db/change-feed.ts).
        await publisher.publish(events(tenantId, out), sqlOf(tx));
        return out;
      }),
    );
  }

  /** RFC 5280 4.1.2.2 for every serial written: a clear 422 instead of an index row too big. */
  function assertSerialLengths(serials: Iterable<{ serialHex: string }>, what: (i: number) => string, code: string): void {
    let i = 0;
    for (const s of serials) {
      const problem = serialLengthProblem(s.serialHex);
      if (problem) throw new UnprocessableError(`${what(i)}: ${problem}`, code);
      i++;
    }
  }

  return {
    /** The tenant's holds, as the `{crls}` JSON text. */
    list: (tenantId: string) => listBody(tenantId),

    /** Adds holds; answers the tenant's holds as the `{crls}` JSON text. */
    async add(tenantId: string, input: PutCrlInput): Promise<string> {
      const fingerprints = [...new Set(input.crls.flatMap((c) => (c.issuerFingerprint ? [c.issuerFingerprint.toLowerCase()] : [])))];
      if (fingerprints.length) {
        const known = await prisma.trustedCertificate.findMany({
          where: { tenantId, fingerprint: { in: fingerprints } },
          select: { fingerprint: true },
        });
        const missing = fingerprints.filter((f) => !known.some((k) => k.fingerprint === f));
        if (missing.length) {
          throw new UnprocessableError(`issuerFingerprint ${missing.join(', ')} is not a trusted certificate of this tenant`, 'revocation/UnknownIssuer');
        }
      }
      const entries = input.crls.map((c) => ({
        serialHex: normalizeSerialHex(c.serialNumberInHex),
        issuerFingerprint: c.issuerFingerprint?.toLowerCase() ?? '',
        revocationDate: new Date(c.revocationDate),
      }));
      assertSerialLengths(entries, (i) => `crls[${i}].serialNumberInHex`, 'revocation/InvalidSerial');
      await upsertAll(tenantId, entries, 'API');
      return listBody(tenantId);
    },

    /** Lifts a hold: every entry of the serial, or only the one of `issuerFingerprint`. */
    async lift(tenantId: string, serialInput: string, issuerFingerprint?: string): Promise<void> {
      const serialHex = normalizeSerialHex(serialInput);
      await prisma.$transaction(async (tx) => {
        const { count } = await tx.revokedSerial.deleteMany({
          where: { tenantId, serialHex, ...(issuerFingerprint ? { issuerFingerprint: issuerFingerprint.toLowerCase() } : {}) },
        });
        if (count === 0) throw new NotFoundError(`Serial ${serialHex} is not revoked`, 'revocation/NotFound');
        await publisher.publish([{ type: 'invalidate', tenantId, what: 'revocations' }], tx);
      });
    },

    /**
     * Imports a CRL signed by one of the tenant's trusted certificates; its serials are held for
     * that CA. Answers that CA's holds as the `{crls}` JSON text, the first IMPORT_RESPONSE_HOLDS of
     * them (a CRL may hold 100,000; GET settings/crl lists them all).
     */
    async importCrl(tenantId: string, fingerprint: string, body: Buffer | string): Promise<string> {
      const ca = await prisma.trustedCertificate.findUnique({
        where: { tenantId_fingerprint: { tenantId, fingerprint: fingerprint.toLowerCase() } },
      });
      if (!ca) throw new NotFoundError(`Trusted certificate ${fingerprint} not found`, 'trustedCertificate/NotFound');
      let crl;
      try {
        crl = await parseCrlInSlices(typeof body === 'string' ? body : new Uint8Array(body), nextTurn);
      } catch (err) {
        throw new UnprocessableError(`The body is not a CRL: ${(err as Error).message}`, 'revocation/InvalidCrl');
      }
      const issuer = parseCertificate(ca.certDer);
      // `openssl ca -gencrl` leaves the CRL number out when its config has no `crlnumber` file;
      // refusing such a CRL would only keep its revocations from applying.
      const check = verifyCrlSignature(crl, issuer, { requireCrlNumber: false });
      if (!check.ok) {
        throw new UnprocessableError(`The CRL is not valid for this CA: ${check.message}`, 'revocation/InvalidCrl');
      }
      const stale = crlTimeProblem(crl, clock(), CRL_CLOCK_SKEW_MS);
      if (stale) throw new UnprocessableError(`The CRL cannot be imported: ${stale}`, 'revocation/InvalidCrl');
      assertSerialLengths(crl.revoked, (i) => `The CRL cannot be imported: entry ${i}`, 'revocation/InvalidCrl');
      const entries = crl.revoked.map((r) => ({
        serialHex: r.serialHex,
        issuerFingerprint: ca.fingerprint,
        revocationDate: r.revocationDate,
      }));
      if (entries.length) await upsertAll(tenantId, entries, 'CRL');
      return listBody(tenantId, ca.fingerprint, IMPORT_RESPONSE_HOLDS);
    },
  };
}
export type RevocationService = ReturnType<typeof createRevocationService>;
