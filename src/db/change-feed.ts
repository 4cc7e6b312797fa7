import pg from 'pg';
import type { SessionChange } from '../verifier/verifier-types.js';

/**
 * Changes that other certgate processes must see at once: cache invalidations for the
 * verifier and session drops for MQTT listeners. Carried by PostgreSQL NOTIFY, so every API
 * and listener process on the same database receives them, with no timer involved.
 */
export type ChangeEvent =
  | { type: 'session-drop'; change: SessionChange }
  | {
      type: 'invalidate';
      tenantId: string;
      what: 'tenant' | 'trusted-certificates' | 'device-profiles' | 'devices' | 'credentials' | 'revocations';
      /** With `what: 'credentials'`: the credentials added or changed, when the publisher knows them. */
      credentialsIds?: string[];
      /**
       * With `what: 'devices'`: the devices created, changed or deleted, under every name they had
       * (a rename names both). Without it, every device of the tenant counts as changed.
       */
      devices?: Array<{ id: string; name: string }>;
    }
  /**
   * Leaves the verifier recorded as OBSERVED credentials, new to the database. A leaf whose
   * credential is known resolves by it rather than by its path, so this counts as a change like
   * any other (a process that missed it drops its caches); kept decisions stay, and credential
   * indexes learn the ids.
   */
  | { type: 'credentials-observed'; tenantId: string; credentialsIds: string[] }
  /**
   * A tenant was deleted (a suspension sends only the session drop): MQTT listeners forget the
   * tenant's sessions, wills, queued and retained messages, so a tenant made again with the same
   * id starts empty.
   */
  | { type: 'tenant-deleted'; tenantId: string };

/**
 * One notification. `seq` is the change counter's value after the change (every change counts;
 * a notice without one comes from an older certgate). `events: null` says the change was too
 * large to describe in one notification: everything counts as changed.
 */
export interface ChangeNotice {
  seq?: bigint;
  events: ChangeEvent[] | null;
}

export const CHANNEL = 'certgate_changes';

/** Something that runs SQL: a Prisma client or an interactive transaction. */
export interface SqlExecutor {
  $executeRawUnsafe(sql: string, ...params: unknown[]): Promise<number>;
}

export interface ChangePublisher {
  /**
   * Announces a change. Pass the change's own transaction: the counter is increased and the
   * notification queued in it, so both take effect exactly when the change commits, and neither
   * when it rolls back (PostgreSQL delivers NOTIFY at commit). Without `db`, the statement runs
   * on its own: counted and announced, but not bound to any change.
   */
  publish(events: ChangeEvent[], db?: SqlExecutor): Promise<void>;
}

export interface ChangeFeed {
  /** Every event of every notification, in commit order. */
  subscribe(listener: (event: ChangeEvent) => void): () => void;
  /** Every notification, in commit order, before its events reach `subscribe`'s listeners. */
  onNotice(listener: (notice: ChangeNotice) => void): () => void;
  /** The LISTEN connection was lost: notifications may go unseen until `onResync`. */
  onLost(listener: () => void): () => void;
  /** The LISTEN connection is back: notifications sent meanwhile were lost. */
  onResync(listener: () => void): () => void;
  /**
   * Reads the change counter on the LISTEN connection itself. PostgreSQL sends a listening session
   * the notifications waiting for it before it reports ready for the next query, so, but for one
   * committed in the very instant of the read, every notification of a change the read counts has
   * reached `onNotice` when this resolves. Rejects while the connection is down.
   */
  readCounter(): Promise<bigint>;
  /** Whether the LISTEN connection is up. */
  readonly connected: boolean;
  /** Drops the LISTEN connection (it did not answer): it reconnects, and resyncs, as after a loss. */
  reset(): void;
  close(): Promise<void>;
}

/** NOTIFY payloads are limited to 8000 bytes; the counter and the frame take the rest. */
export const MAX_PAYLOAD_BYTES = 7_900;
const EVENTS_LIMIT = MAX_PAYLOAD_BYTES - 60;

export const COUNTER_SQL = 'SELECT "seq"::text AS seq FROM "ChangeCounter" WHERE "id" = 1';

/**
 * Packs events into groups whose JSON fits one notification, in order. An event too large by
 * itself travels alone as `null`: receivers then count everything as changed.
 */
function pack(events: readonly ChangeEvent[]): string[] {
  const out: string[] = [];
  let group: string[] = [];
  let size = 2;
  for (const e of events) {
    const json = JSON.stringify(e);
    const bytes = Buffer.byteLength(json) + 1;
    if (bytes + 2 > EVENTS_LIMIT) {
      if (group.length) out.push(`[${group.join(',')}]`);
      out.push('null');
      group = [];
      size = 2;
      continue;
    }
    if (size + bytes > EVENTS_LIMIT && group.length) {
      out.push(`[${group.join(',')}]`);
      group = [];
      size = 2;
    }
    group.push(json);
    size += bytes;
  }
  if (group.length) out.push(`[${group.join(',')}]`);
  return out;
}

/** NOTIFY (and the counter) through any query function: a pool, a Prisma client, a transaction. */
export function createChangePublisher(defaultDb: SqlExecutor): ChangePublisher {
  return {
    async publish(events, db = defaultDb) {
      if (events.length === 0) return;
      // A change too large for one notification is announced in several, each counted: in one
      // transaction they commit together and arrive in order, so no receiver takes them for lost.
      for (const json of pack(events)) {
        const bumped = await db.$executeRawUnsafe(
          `WITH c AS (UPDATE "ChangeCounter" SET "seq" = "seq" + 1 WHERE "id" = 1 RETURNING "seq")
           SELECT pg_notify($1, '{"seq":"' || c."seq" || '","events":' || $2::text || '}') FROM c`,
          CHANNEL,
          json,
        );
        if (bumped !== 1) throw new Error('the change counter is missing (migrations not applied?)');
      }
    },
  };
}

/** Splits an event's id list so each NOTIFY payload stays under the size limit. */
export function credentialsObserved(tenantId: string, ids: readonly string[]): ChangeEvent[][] {
  // A SHA-256 hex id takes 67 bytes in the JSON list; leave room for the rest of the event.
  const perEvent = Math.floor((EVENTS_LIMIT - 200 - tenantId.length) / 67);
  const out: ChangeEvent[][] = [];
  for (let i = 0; i < ids.length; i += perEvent) {
    out.push([{ type: 'credentials-observed', tenantId, credentialsIds: ids.slice(i, i + perEvent) }]);
  }
  return out;
}

function parseNotice(payload: string): ChangeNotice | undefined {
  try {
    const raw = JSON.parse(payload) as { seq?: string; events?: ChangeEvent[] | null };
    if (raw.events !== null && !Array.isArray(raw.events)) return undefined;
    return { ...(raw.seq !== undefined ? { seq: BigInt(raw.seq) } : {}), events: raw.events };
  } catch {
    return undefined;
  }
}

/** How long after a lost LISTEN connection the next attempt is made, and between attempts. */
const RECONNECT_MS = 250;

/**
 * LISTENs on its own connection. A lost connection is tried again every quarter of a second, not
 * with a growing backoff: a change made just after the database came back must reach every
 * process within seconds, and a connection attempt costs the database little.
 */
export async function createChangeFeed(
  databaseUrl: string,
  log: { warn(obj: object, msg: string): void } = { warn: () => {} },
): Promise<ChangeFeed> {
  const listeners = new Set<(e: ChangeEvent) => void>();
  const noticeListeners = new Set<(n: ChangeNotice) => void>();
  const resyncListeners = new Set<() => void>();
  const lostListeners = new Set<() => void>();
  let client: pg.Client | undefined;
  let closed = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let failures = 0;
  let reading: Promise<void> = Promise.resolve();

  const connect = async (): Promise<void> => {
    const c = new pg.Client({
      connectionString: databaseUrl,
      application_name: 'certgate change feed',
      // A connection that cannot be made within two seconds is tried again; one that goes silent
      // is noticed by the trust state's counter reads (reset) or by TCP keepalive.
      connectionTimeoutMillis: 2_000,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    c.on('notification', (msg) => {
      if (msg.channel !== CHANNEL || !msg.payload) return;
      const notice = parseNotice(msg.payload);
      if (!notice) return;
      for (const l of noticeListeners) l(notice);
      if (notice.events) for (const event of notice.events) for (const l of listeners) l(event);
    });
    const lost = (why: string) => {
      if (closed || client !== c) return;
      log.warn({ err: why }, 'change feed connection lost');
      client = undefined;
      for (const l of lostListeners) l();
      scheduleReconnect();
    };
    c.on('error', (err) => lost(err.message));
    c.on('end', () => lost('connection ended'));
    try {
      await c.connect();
      await c.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      c.end().catch(() => {});
      throw err;
    }
    if (closed) {
      await c.end().catch(() => {});
      return;
    }
    client = c;
  };

  const scheduleReconnect = (): void => {
    if (closed || retryTimer) return;
    retryTimer = setTimeout(async () => {
      retryTimer = undefined;
      try {
        await connect();
        failures = 0;
        reading = Promise.resolve();
        if (!closed) for (const l of resyncListeners) l();
      } catch (err) {
        // Once per outage, not every quarter of a second.
        if (failures++ === 0) log.warn({ err: (err as Error).message }, 'change feed cannot reconnect yet');
        scheduleReconnect();
      }
    }, RECONNECT_MS);
    retryTimer.unref();
  };

  await connect();

  return {
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    onNotice(listener) {
      noticeListeners.add(listener);
      return () => noticeListeners.delete(listener);
    },
    onLost(listener) {
      lostListeners.add(listener);
      return () => lostListeners.delete(listener);
    },
    onResync(listener) {
      resyncListeners.add(listener);
      return () => resyncListeners.delete(listener);
    },
    readCounter() {
      const c = client;
      if (!c) return Promise.reject(new Error('the change feed is not connected'));
      // One query at a time on the connection: a read that outlived its caller's timeout (a frozen
      // database) is waited for, not run beside.
      // A named statement: parsed and planned once per connection, not on every decision.
      const statement = { name: 'certgate_change_counter', text: COUNTER_SQL };
      const read = reading.then(
        () => c.query<{ seq: string }>(statement),
        () => c.query<{ seq: string }>(statement),
      );
      reading = read.then(
        () => undefined,
        () => undefined,
      );
      return read.then(({ rows }) => BigInt(rows[0]!.seq));
    },
    get connected() {
      return client !== undefined;
    },
    reset() {
      const c = client;
      if (!c) return;
      // As a broken connection: `end` reports it lost, and the reconnect follows.
      (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    },
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      const c = client;
      client = undefined;
      await c?.end().catch(() => {});
    },
  };
}
