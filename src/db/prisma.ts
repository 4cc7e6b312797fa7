import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { PrismaClient } from '../generated/prisma/client.js';
import { DATABASE_TIMEOUT_DEFAULTS } from '../config.js';

export type { PrismaClient } from '../generated/prisma/client.js';
export type { Prisma } from '../generated/prisma/client.js';

/** The `pg` pool under each client `createPrismaClient` made, for `executeBulk` and `pgTransaction`. */
const pools = new WeakMap<object, pg.Pool>();

/** A schema name as a quoted identifier, escaped for a libpq `-c` startup option. */
function searchPathOption(schema: string): string {
  return `"${schema.replaceAll('"', '""')}"`.replace(/[\\ ]/g, (c) => `\\${c}`);
}

/** How long a database call may take; see `DATABASE_STATEMENT_TIMEOUT_MS` and `DATABASE_ACQUIRE_TIMEOUT_MS`. */
export interface DatabaseTimeouts {
  /** Longest a statement may run, in ms: PostgreSQL cancels it, and the client gives up shortly after. */
  statementTimeoutMs: number;
  /** Longest a caller waits for a pooled connection (or for a new one to be opened), in ms. */
  acquireTimeoutMs: number;
  /** Longest the change counter read before each decision may take, in ms (`DATABASE_COUNTER_TIMEOUT_MS`). */
  counterTimeoutMs?: number;
}

export interface PrismaClientOptions extends Partial<DatabaseTimeouts> {
  /** Connections of the pool (default 10). */
  poolSize?: number;
}

/**
 * The client gives up this long after PostgreSQL should have cancelled the statement: a server
 * that answers cancels it itself (and the connection stays usable); one that is frozen or cut off
 * does not, and the client must not wait for it.
 */
const CLIENT_GRACE_MS = 200;

/**
 * The options every `pg` connection of certgate but the LISTEN one opens with: a statement bound
 * on both sides, and no wait for a connection beyond `acquireTimeoutMs`. (The LISTEN connection is
 * idle by design and is watched by the change feed instead.)
 */
export function boundedConnection(timeouts: Partial<DatabaseTimeouts> = {}): pg.ClientConfig & { connectionTimeoutMillis: number } {
  const statement = timeouts.statementTimeoutMs ?? DATABASE_TIMEOUT_DEFAULTS.statementTimeoutMs;
  return {
    statement_timeout: statement,
    query_timeout: statement + CLIENT_GRACE_MS,
    connectionTimeoutMillis: timeouts.acquireTimeoutMs ?? DATABASE_TIMEOUT_DEFAULTS.acquireTimeoutMs,
  };
}

/** Prisma on the pure-JS `pg` driver: no query-engine binary is needed at run time. */
export function createPrismaClient(databaseUrl: string, options: PrismaClientOptions | number = {}): PrismaClient {
  const opts = typeof options === 'number' ? { poolSize: options } : options;
  const url = new URL(databaseUrl);
  const schema = url.searchParams.get('schema') ?? undefined;
  url.searchParams.delete('schema');
  // allowExitOnIdle: Prisma ends the pool on $disconnect only if it ever connected itself, so idle
  // connections opened by executeBulk alone must not keep the process alive.
  const bounded = boundedConnection(opts);
  const pool = new pg.Pool({
    connectionString: url.toString(),
    max: opts.poolSize ?? 10,
    ...bounded,
    // The pool's own limit is the longest wait of a busy database (see `acquireWhileAnswering`).
    connectionTimeoutMillis: Math.max(BUSY_WAIT_MS, bounded.connectionTimeoutMillis),
    // The client's side of the statement bound is the pool's watchdog (`watchSilentConnections`):
    // `pg`'s own read timer fires after an event loop held up by a burst of work before the
    // answers that arrived meanwhile are read, and fails statements the server did answer.
    query_timeout: undefined,
    allowExitOnIdle: true,
    // `?schema=` is Prisma's: raw SQL (and the batch statements) find unqualified tables through
    // the connection's search_path, as the Prisma CLI's connections do (scripts/prisma-schema-engine.mjs).
    ...(schema ? { options: `-c search_path=${searchPathOption(schema)}` } : {}),
  });
  // An idle connection that breaks is dropped by the pool; the next statement reports the cause.
  pool.on('error', () => {});
  // A connection given back while a statement of it still runs gave up on that statement (the
  // client's own timeout: the server did not answer): its session may be inside a transaction
  // that was never rolled back, so it is closed rather than handed to the next caller. Closing
  // it also ends that session's transaction on the server.
  pool.on('release', (err, client) => {
    if (!err && hasStatementInFlight(client)) void client.end().catch(() => {});
  });
  acquireWhileAnswering(pool, bounded.connectionTimeoutMillis);
  watchSilentConnections(pool, bounded.query_timeout!);
  const adapter = new PrismaPg(pool, { ...(schema ? { schema } : {}), disposeExternalPool: true });
  const client = new PrismaClient({ adapter });
  pools.set(client, pool);
  return client;
}

/** The longest a caller waits for a connection while the database answers (a storm), in ms. */
const BUSY_WAIT_MS = 10_000;

/**
 * Bounds the wait for a pooled connection by the database's progress rather than by the clock
 * alone: a caller waits while the pool's statements keep completing (a storm queues hundreds of
 * requests behind a few connections, and each is served in turn), but no longer than `acquireMs`
 * without one statement completing or one connection opening: what a database that stopped
 * answering looks like. `pg-pool` has a single timeout for both; its own stays as the limit of
 * a busy wait (BUSY_WAIT_MS). A caller given up on takes its connection later and gives it back.
 */
function acquireWhileAnswering(pool: pg.Pool, acquireMs: number): void {
  let progress = 0;
  pool.on('connect', () => (progress = Date.now()));
  pool.on('release', (err, client) => {
    if (!err && !hasStatementInFlight(client)) progress = Date.now();
  });
  const connect = pool.connect.bind(pool) as () => Promise<pg.PoolClient>;
  const bounded = (): Promise<pg.PoolClient> =>
    new Promise((resolve, reject) => {
      const started = Date.now();
      let settled = false;
      let timer: NodeJS.Timeout;
      const left = () => Math.max(started, progress) + acquireMs - Date.now();
      const check = () => {
        if (left() > 0) {
          timer = setTimeout(check, left());
          return;
        }
        // Timers run before the I/O that arrived meanwhile: after an event loop held up by a burst
        // of work, the statements completed during it are counted first (the check phase follows
        // the poll phase).
        setImmediate(() => {
          if (settled) return;
          if (left() > 0) {
            timer = setTimeout(check, left());
            return;
          }
          settled = true;
          reject(new Error('timeout exceeded when trying to connect'));
        });
      };
      timer = setTimeout(check, acquireMs);
      connect().then(
        (client) => {
          clearTimeout(timer);
          if (settled) client.release();
          else resolve(client);
        },
        (err: unknown) => {
          clearTimeout(timer);
          if (!settled) reject(err);
        },
      );
    });
  // `pool.query` checks out through `connect` with a callback; Prisma's transactions and
  // `pgTransaction` through its promise.
  (pool as unknown as { connect: unknown }).connect = (cb?: (err: unknown, client?: pg.PoolClient, done?: () => void) => void) => {
    if (!cb) return bounded();
    bounded().then(
      (client) => cb(undefined, client, (err?: unknown) => client.release(err as Error | undefined)),
      (err: unknown) => cb(err),
    );
  };
}

/**
 * Closes a pooled connection that waits for the server and has heard nothing from it for
 * `silentMs` (the statement timeout and a grace): the server would have cancelled the statement
 * itself by then, so it is frozen or cut off. The statements of the connection fail ("Connection
 * terminated"), the caller answers 503, and the session on the server, if it ever wakes, ends
 * with its transaction rolled back. Checked a few times a second, after the I/O that arrived by
 * then has been read (a check phase), so an event loop held up by work does not count as silence.
 */
function watchSilentConnections(pool: pg.Pool, silentMs: number): void {
  const heard = new Map<pg.PoolClient, () => number>();
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    timer = undefined;
    setImmediate(() => {
      const now = Date.now();
      for (const [client, last] of heard) {
        const waiting = (client as unknown as { readyForQuery?: boolean }).readyForQuery === false;
        if (waiting && now - last() > silentMs) {
          heard.delete(client);
          (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
        }
      }
      if (heard.size && !timer) (timer = setTimeout(check, WATCH_INTERVAL_MS)).unref();
    });
  };
  pool.on('connect', (client) => {
    const stream = (client as unknown as { connection: { stream: NodeJS.EventEmitter & { write: (...args: unknown[]) => boolean } } }).connection.stream;
    let last = Date.now();
    stream.on('data', () => (last = Date.now()));
    const write = stream.write.bind(stream);
    stream.write = (...args: unknown[]) => {
      last = Date.now();
      return write(...args);
    };
    heard.set(client, () => last);
    if (!timer) (timer = setTimeout(check, WATCH_INTERVAL_MS)).unref();
  });
  pool.on('remove', (client) => heard.delete(client));
}

/** How often pooled connections are checked for silence. */
const WATCH_INTERVAL_MS = 250;

/**
 * Whether the connection is not at rest: a statement of it still runs (the server never answered
 * it: `pg` has sent the next one or gave up on it, and is not yet ready for another), or its
 * session is inside a transaction. `readyForQuery` is `pg`'s own flag (not in its types).
 */
function hasStatementInFlight(client: pg.PoolClient): boolean {
  const ready = (client as unknown as { readyForQuery?: boolean }).readyForQuery;
  return ready === false || client.getTransactionStatus() !== 'I';
}

/**
 * Batch statements of the hot path run straight on the client's `pg` pool, past Prisma's query
 * pipeline, which re-encodes every parameter on its way to the driver and every row on its way
 * back: for a batch whose parameter is a megabyte of JSON that cost three times the JSON itself
 * (measured: 9.5 against 3.5 µs of event-loop time per auth event row). For a client made
 * elsewhere (or a transaction) they fall back to `$queryRawUnsafe` / `$executeRawUnsafe`.
 *
 * `queryBulk` answers the rows (columns as PostgreSQL types them; cast in SQL what must be text).
 */
export async function queryBulk<T>(db: Pick<PrismaClient, '$queryRawUnsafe'>, statement: BulkStatement, params: unknown[]): Promise<T[]> {
  const pool = pools.get(db);
  if (!pool) return db.$queryRawUnsafe<T[]>(statement.text, ...params);
  return (await pool.query({ ...statement, values: params })).rows as T[];
}

/** Like `queryBulk` for a statement that writes: answers the number of rows it touched. */
export async function executeBulk(db: Pick<PrismaClient, '$executeRawUnsafe'>, statement: BulkStatement, params: unknown[]): Promise<number> {
  const pool = pools.get(db);
  if (!pool) return db.$executeRawUnsafe(statement.text, ...params);
  const result = await pool.query({ ...statement, values: params });
  return result.rowCount ?? 0;
}

/** A transaction on one connection of a client's `pg` pool (`pgTransaction`). */
export interface PgTransaction {
  query<R extends object>(statement: { text: string; values?: unknown[] }): Promise<R[]>;
  /**
   * Streams `data` (COPY's text format, as `CopyText` writes it) to a `COPY ... FROM STDIN`:
   * PostgreSQL parses COPY's text for a fraction of what JSON or array parameters cost.
   */
  copy(sql: string, data: Uint8Array): Promise<void>;
}

/**
 * Runs `work` in one transaction on one connection of the client's `pg` pool, for what Prisma has
 * no form for (COPY): committed when `work` resolves, rolled back when it throws.
 */
export async function pgTransaction<T>(db: object, work: (tx: PgTransaction) => Promise<T>): Promise<T> {
  const pool = pools.get(db);
  if (!pool) throw new Error('pgTransaction needs a client made by createPrismaClient');
  const client = await pool.connect();
  let broken: unknown;
  // A connection that breaks while checked out also says so as an `error` event, which the pool
  // listens for only on idle connections: unheard, it would end the process. The statement in
  // flight fails with the same error, so noting it here is enough.
  const onError = (err: Error) => (broken = err);
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    try {
      const result = await work({
        query: async <R extends object>(statement: { text: string; values?: unknown[] }) => (await client.query<R>(statement)).rows,
        copy: async (sql, data) => {
          if (data.length) await pipeline(Readable.from([Buffer.from(data.buffer, data.byteOffset, data.byteLength)]), client.query(copyFrom(sql)));
        },
      });
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
      throw err;
    }
  } finally {
    // A connection that broke, or could not even roll back, is not given to the next caller; it
    // keeps the listener, as it may still report its end after this.
    if (!broken) client.off('error', onError);
    client.release(broken instanceof Error ? broken : undefined);
  }
}

/**
 * A named statement: each connection parses it once and PostgreSQL may keep its plan, where an
 * unnamed one is parsed and planned on every call (measurable for the device lookups of a storm
 * of first connections, several hundred a second).
 */
export interface BulkStatement {
  name: string;
  text: string;
}

/** A Prisma client or an interactive transaction: repositories accept either. */
export type Db = Pick<
  PrismaClient,
  | 'tenant'
  | 'user'
  | 'deviceProfile'
  | 'trustedCertificate'
  | 'device'
  | 'deviceCredential'
  | 'revokedSerial'
  | 'authEvent'
  | 'setting'
  | '$queryRawUnsafe'
  | '$executeRawUnsafe'
>;

/**
 * A `pgTransaction` as something that runs SQL the way a Prisma client does, so a change can be
 * announced in its own transaction (`ChangePublisher.publish(events, sqlOf(tx))`). The count is
 * of the rows the statement answered.
 */
export function sqlOf(tx: PgTransaction): { $executeRawUnsafe(sql: string, ...params: unknown[]): Promise<number> } {
  return { $executeRawUnsafe: async (text, ...values) => (await tx.query({ text, values })).length };
}
