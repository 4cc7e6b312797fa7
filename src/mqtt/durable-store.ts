/**
 * What the MQTT broker keeps in PostgreSQL: retained messages (MqttRetained) and persistent
 * sessions (MqttSession: subscriptions with their options, expiry, queued and in-flight QoS 1 and
 * 2 messages, QoS 2 packet identifiers awaiting PUBREL), written as they change.
 *
 * Write-through, one transaction per event-loop turn: the changes of a turn are collected (the
 * last state of each session and retained topic wins) and written together after the turn; while
 * one transaction runs, the next turns' changes wait and go in the next one. A connection whose
 * packet changed stored state sends its acknowledgement (SUBACK, UNSUBACK, PUBACK or PUBREC to a
 * publisher, PUBCOMP, and PUBREL to a subscriber) only once the transaction holding the change has
 * committed (`changes` / `committed`, used by mqtt-connection.ts), so what the broker acknowledged
 * survives the process being killed. A failed write is reported to the waiting connections and
 * tried again a little later; sessions that end with their connection (session expiry 0) are
 * never written.
 *
 * A session's row is its whole state, named by its `holder` (one incarnation of the session): a
 * session that ends deletes only a row of its own, never the one a newer session with the same
 * client id (in this process or another) wrote. Rows go with their tenant (foreign key cascade);
 * a write for a tenant deleted meanwhile writes nothing.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { pgTransaction, type PrismaClient } from '../db/prisma.js';
import type { ForwardedProperties, Message, QoS, Session, SessionState } from './broker.js';

export interface StoredSession {
  tenantId: string;
  state: SessionState;
  /** Epoch ms the session expires at when nobody resumes it. */
  expiresAt: number;
}

/** What a connection needs to hold its acknowledgements until the state they confirm is stored. */
export interface Durability {
  /** Changes recorded so far (a connection compares it before and after handling a packet). */
  readonly changes: number;
  /** Resolves true once every change recorded so far is committed, false if writing them failed. */
  committed(): Promise<boolean>;
}

export interface DurableStore extends Durability {
  /** Every stored retained message that has not expired. */
  loadRetained(): Promise<Array<{ tenantId: string; message: Message }>>;
  /** Every stored session that has not expired; the rows of expired ones are deleted. */
  loadSessions(): Promise<StoredSession[]>;
  /** A session's state changed: its row is written (or, with session expiry 0 now, deleted). */
  sessionChanged(session: Session): void;
  /** A stored session ended: its row is deleted, if it is still the one `holder` wrote. */
  sessionEnded(tenantId: string, clientId: string, holder: string): void;
  /** A retained message set, or (`message` undefined) removed; `expired`: only if still expired. */
  retained(tenantId: string, topic: string, message: Message | undefined, expired?: boolean): void;
  /** A tenant was deleted: writes not yet made for it are dropped. */
  forgetTenant(tenantId: string): void;
  /** Writes what is pending, then stops. */
  close(): Promise<void>;
}

/** After a failed write (the database unreachable), the changes are tried again this much later. */
const RETRY_MS = 2_000;

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** JSON for the properties: the correlation data (binary) as base64. */
function propertiesToJson(p: ForwardedProperties | undefined): object | undefined {
  if (!p) return undefined;
  return { ...p, ...(p.correlationData ? { correlationData: p.correlationData.toString('base64') } : {}) };
}

function propertiesFromJson(j: unknown): ForwardedProperties | undefined {
  if (!j || typeof j !== 'object') return undefined;
  const p = j as ForwardedProperties & { correlationData?: unknown };
  return {
    ...p,
    ...(typeof p.correlationData === 'string' ? { correlationData: Buffer.from(p.correlationData, 'base64') } : {}),
  } as ForwardedProperties;
}

/** A session state as JSON text: buffers (payloads, correlation data) as base64. */
export function sessionToJson(state: SessionState): string {
  return JSON.stringify(state, function (this: Record<string, unknown>, key, value) {
    const raw = this[key];
    return Buffer.isBuffer(raw) ? { $base64: raw.toString('base64') } : value;
  });
}

/** And back; rows written as `{type: 'Buffer', data}` by earlier versions read too. */
export function sessionFromJson(j: unknown): SessionState {
  return JSON.parse(JSON.stringify(j), (_k, v) => {
    if (v && typeof v === 'object') {
      if (typeof v.$base64 === 'string') return Buffer.from(v.$base64, 'base64');
      if (v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data);
    }
    return v;
  }) as SessionState;
}

type Op =
  | { kind: 'session'; tenantId: string; session: Session }
  | { kind: 'session-delete'; tenantId: string; clientId: string; holder: string }
  | { kind: 'retained'; tenantId: string; topic: string; message: Message | undefined; expired?: boolean };

interface Batch {
  ops: Map<string, Op>;
  done: Promise<boolean>;
  resolve(ok: boolean): void;
}

const newBatch = (): Batch => {
  let resolve!: (ok: boolean) => void;
  const done = new Promise<boolean>((r) => (resolve = r));
  return { ops: new Map(), done, resolve };
};

const UPSERT_SESSION = `INSERT INTO "MqttSession" ("tenantId", "clientIdHash", "expiresAt", "state")
  SELECT $1, $2, $3, $4::jsonb WHERE EXISTS (SELECT 1 FROM "Tenant" WHERE "id" = $1)
  ON CONFLICT ("tenantId", "clientIdHash") DO UPDATE SET "expiresAt" = EXCLUDED."expiresAt", "state" = EXCLUDED."state"`;
const DELETE_SESSION = `DELETE FROM "MqttSession"
  WHERE "tenantId" = $1 AND "clientIdHash" = $2 AND coalesce("state"->>'holder', '') = $3`;
const UPSERT_RETAINED = `INSERT INTO "MqttRetained" ("tenantId", "topicHash", "topic", "payload", "qos", "properties", "expiresAt", "updatedAt")
  SELECT $1, $2, $3, $4, $5, $6::jsonb, $7, now() WHERE EXISTS (SELECT 1 FROM "Tenant" WHERE "id" = $1)
  ON CONFLICT ("tenantId", "topicHash") DO UPDATE SET "topic" = EXCLUDED."topic", "payload" = EXCLUDED."payload",
    "qos" = EXCLUDED."qos", "properties" = EXCLUDED."properties", "expiresAt" = EXCLUDED."expiresAt", "updatedAt" = now()`;
const DELETE_RETAINED = `DELETE FROM "MqttRetained" WHERE "tenantId" = $1 AND "topicHash" = $2`;
const DELETE_RETAINED_EXPIRED = `${DELETE_RETAINED} AND "expiresAt" <= $3`;

export function createDurableStore(prisma: PrismaClient, log: Logger): DurableStore {
  /** Changes of the turns since the last write began. */
  let collecting: Batch | undefined;
  /** The batch being written. */
  let writing: Batch | undefined;
  let scheduled: NodeJS.Immediate | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let failing = false;
  let closed = false;
  let changes = 0;

  const statement = (op: Op, now: number): { text: string; values: unknown[] } | undefined => {
    switch (op.kind) {
      case 'session': {
        const s = op.session;
        // Ended meanwhile: moved to another process, which writes it from now on.
        if (s.quiet) return undefined;
        const state = s.state();
        // A session with its client connected expires its expiry interval after the connection
        // ends; were the process killed now, that is about now.
        const expiresAt = state.attached || s.expiresAt === undefined ? now + s.expiryMs : s.expiresAt;
        return { text: UPSERT_SESSION, values: [op.tenantId, sha256(s.clientId), new Date(expiresAt), sessionToJson(state)] };
      }
      case 'session-delete':
        return { text: DELETE_SESSION, values: [op.tenantId, sha256(op.clientId), op.holder] };
      case 'retained': {
        const m = op.message;
        if (!m) {
          return op.expired
            ? { text: DELETE_RETAINED_EXPIRED, values: [op.tenantId, sha256(op.topic), new Date(now)] }
            : { text: DELETE_RETAINED, values: [op.tenantId, sha256(op.topic)] };
        }
        const properties = propertiesToJson(m.properties);
        return {
          text: UPSERT_RETAINED,
          values: [
            op.tenantId,
            sha256(op.topic),
            op.topic,
            m.payload,
            m.qos,
            properties ? JSON.stringify(properties) : null,
            m.expiresAt !== undefined ? new Date(m.expiresAt) : null,
          ],
        };
      }
    }
  };

  const schedule = (): void => {
    if (scheduled || writing || closed) return;
    scheduled = setImmediate(() => void run());
  };

  /** Writes the collected batches one after the other, each in one transaction. */
  const run = async (): Promise<void> => {
    scheduled = undefined;
    clearTimeout(retryTimer);
    retryTimer = undefined;
    while (collecting && !writing) {
      const batch = (writing = collecting);
      collecting = undefined;
      let ok = true;
      try {
        const now = Date.now();
        const statements = [...batch.ops.values()].flatMap((op) => statement(op, now) ?? []);
        await pgTransaction(prisma, async (tx) => {
          for (const s of statements) await tx.query(s);
        });
        if (failing) log.info('MQTT sessions and retained messages are stored again');
        failing = false;
      } catch (err) {
        ok = false;
        if (!failing) {
          log.warn({ err: (err as Error).message }, 'MQTT sessions and retained messages not stored; clients are not acknowledged; trying again');
        }
        failing = true;
        // Kept for the next try, unless a newer change of the same session or topic came meanwhile.
        collecting ??= newBatch();
        for (const [k, op] of batch.ops) if (!collecting.ops.has(k)) collecting.ops.set(k, op);
      } finally {
        writing = undefined;
      }
      batch.resolve(ok);
      if (!ok) {
        if (!closed) {
          retryTimer = setTimeout(() => void run(), RETRY_MS);
          retryTimer.unref();
        }
        return;
      }
    }
  };

  const record = (key: string, op: Op): void => {
    if (closed) return;
    changes++;
    collecting ??= newBatch();
    collecting.ops.delete(key); // re-inserted last: changes are written in the order they were made
    collecting.ops.set(key, op);
    if (!failing) schedule();
  };

  const sessionKey = (tenantId: string, clientId: string) => `s\u0000${tenantId}\u0000${clientId}`;

  return {
    get changes() {
      return changes;
    },
    committed() {
      if (collecting) {
        // While the database fails, a change waits for the next try: the client is told now.
        if (failing) return Promise.resolve(false);
        return collecting.done;
      }
      return writing ? writing.done : Promise.resolve(true);
    },
    async loadRetained() {
      const rows = await prisma.mqttRetained.findMany();
      const now = Date.now();
      return rows
        .filter((r) => !r.expiresAt || r.expiresAt.getTime() > now)
        .map((r) => {
          const properties = propertiesFromJson(r.properties);
          const message: Message = { topic: r.topic, payload: Buffer.from(r.payload), qos: r.qos as QoS, retain: true };
          if (properties) message.properties = properties;
          if (r.expiresAt) message.expiresAt = r.expiresAt.getTime();
          return { tenantId: r.tenantId, message };
        });
    },
    async loadSessions() {
      const rows = await prisma.mqttSession.findMany();
      const now = Date.now();
      const out: StoredSession[] = [];
      const expired: Array<{ tenantId: string; clientIdHash: string }> = [];
      for (const r of rows) {
        const state = sessionFromJson(r.state);
        // Rows written at shutdown by earlier versions have no holder.
        state.holder ??= '';
        // Its client was connected when the process stopped: the expiry runs from now.
        const expiresAt = state.attached ? now + state.expiryMs : r.expiresAt.getTime();
        if (expiresAt <= now) expired.push({ tenantId: r.tenantId, clientIdHash: r.clientIdHash });
        else out.push({ tenantId: r.tenantId, state, expiresAt });
      }
      if (expired.length) await prisma.mqttSession.deleteMany({ where: { OR: expired, expiresAt: { lte: new Date(now) } } });
      return out;
    },
    sessionChanged(session) {
      const tenantId = session.space.tenantId;
      const key = sessionKey(tenantId, session.clientId);
      if (session.expiryMs > 0) {
        session.stored = true;
        record(key, { kind: 'session', tenantId, session });
      } else if (session.stored) {
        // Its expiry became 0: it ends with its connection, and its row goes now.
        session.stored = false;
        record(key, { kind: 'session-delete', tenantId, clientId: session.clientId, holder: session.holder });
      }
    },
    sessionEnded(tenantId, clientId, holder) {
      record(sessionKey(tenantId, clientId), { kind: 'session-delete', tenantId, clientId, holder });
    },
    retained(tenantId, topic, message, expired) {
      record(`r\u0000${tenantId}\u0000${topic}`, { kind: 'retained', tenantId, topic, message, ...(expired ? { expired } : {}) });
    },
    forgetTenant(tenantId) {
      if (!collecting) return;
      for (const [k, op] of collecting.ops) if (op.tenantId === tenantId) collecting.ops.delete(k);
    },
    async close() {
      if (scheduled) clearImmediate(scheduled);
      scheduled = undefined;
      await writing?.done;
      failing = false; // tried once more
      await run();
      closed = true;
      clearTimeout(retryTimer);
      // Connections still waiting hear that nothing more is written.
      collecting?.resolve(false);
    },
  };
}
