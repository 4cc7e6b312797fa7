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
   * Leaves the verifier recorded as OBSERVED credentials. They change no decision (the same
   * device is found either way), so caches of decisions stay; credential indexes learn the ids.
   */
  | { type: 'credentials-observed'; tenantId: string; credentialsIds: string[] }
  /**
   * A tenant was deleted (a suspension sends only the session drop): MQTT listeners forget the
   * tenant's sessions, wills, queued and retained messages, so a tenant made again with the same
   * id starts empty.
   */
  | { type: 'tenant-deleted'; tenantId: string };

export const CHANNEL = 'certgate_changes';

export interface ChangePublisher {
  publish(events: ChangeEvent[]): Promise<void>;
}

export interface ChangeFeed {
  subscribe(listener: (event: ChangeEvent) => void): () => void;
  /**
   * Called when the connection is lost: from then on changes may go unseen, so caches must not
   * be trusted (nor filled) until `onResync`.
   */
  onLost(listener: () => void): () => void;
  /** Called after a reconnect: a notification may have been missed, so caches must be dropped. */
  onResync(listener: () => void): () => void;
  close(): Promise<void>;
}

/** NOTIFY payloads are limited to 8000 bytes. */
export const MAX_PAYLOAD_BYTES = 7_900;

/** NOTIFY through any query function (a pool, a Prisma client, a transaction). */
export function createChangePublisher(
  exec: (sql: string, ...params: unknown[]) => Promise<unknown>,
): ChangePublisher {
  return {
    async publish(events) {
      if (events.length === 0) return;
      const payloads = events.map((e) => JSON.stringify(e));
      if (payloads.length === 1) {
        await exec('SELECT pg_notify($1, $2)', CHANNEL, payloads[0]);
        return;
      }
      // One statement for the lot, sent in array order (the order of one transaction's notifications).
      await exec('SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p', CHANNEL, payloads);
    },
  };
}

/** Splits an event's id list so each NOTIFY payload stays under the size limit. */
export function credentialsObserved(tenantId: string, ids: readonly string[]): ChangeEvent[] {
  // A SHA-256 hex id takes 67 bytes in the JSON list; leave room for the rest of the event.
  const perEvent = Math.floor((MAX_PAYLOAD_BYTES - 200 - tenantId.length) / 67);
  const out: ChangeEvent[] = [];
  for (let i = 0; i < ids.length; i += perEvent) {
    out.push({ type: 'credentials-observed', tenantId, credentialsIds: ids.slice(i, i + perEvent) });
  }
  return out;
}

/** LISTENs on its own connection and reconnects with backoff if the connection drops. */
export async function createChangeFeed(
  databaseUrl: string,
  log: { warn(obj: object, msg: string): void } = { warn: () => {} },
): Promise<ChangeFeed> {
  const listeners = new Set<(e: ChangeEvent) => void>();
  const resyncListeners = new Set<() => void>();
  const lostListeners = new Set<() => void>();
  let client: pg.Client | undefined;
  let closed = false;
  let retryTimer: NodeJS.Timeout | undefined;

  const connect = async (): Promise<void> => {
    const c = new pg.Client({ connectionString: databaseUrl, keepAlive: true });
    c.on('notification', (msg) => {
      if (msg.channel !== CHANNEL || !msg.payload) return;
      let event: ChangeEvent;
      try {
        event = JSON.parse(msg.payload) as ChangeEvent;
      } catch {
        return;
      }
      for (const l of listeners) l(event);
    });
    const lost = (why: string) => {
      if (closed || client !== c) return;
      log.warn({ err: why }, 'change feed connection lost');
      for (const l of lostListeners) l();
      scheduleReconnect(1_000);
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
    client = c;
  };

  const scheduleReconnect = (delay: number): void => {
    if (closed || retryTimer) return;
    const old = client;
    client = undefined;
    old?.end().catch(() => {});
    retryTimer = setTimeout(async () => {
      retryTimer = undefined;
      try {
        await connect();
        for (const l of resyncListeners) l();
      } catch {
        scheduleReconnect(Math.min(delay * 2, 10_000));
      }
    }, delay);
    retryTimer.unref();
  };

  await connect();

  return {
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    onLost(listener) {
      lostListeners.add(listener);
      return () => lostListeners.delete(listener);
    },
    onResync(listener) {
      resyncListeners.add(listener);
      return () => resyncListeners.delete(listener);
    },
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      await client?.end().catch(() => {});
    },
  };
}
