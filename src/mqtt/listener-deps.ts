/**
 * What a listener process builds for itself when it does not share a process with the API: a
 * listener alone (`certgate mqtt`) and every worker of a multi-process listener (mqtt-worker.ts).
 */
import type { Logger } from 'pino';
import { COUNTER_SQL, createChangeFeed, type ChangeFeed } from '../db/change-feed.js';
import type { Metrics } from '../plugins/metrics.js';
import { createPrismaClient, queryBulk, type DatabaseTimeouts, type PrismaClient } from '../db/prisma.js';
import { createBurstLogger, reasonOf } from '../lib/logger.js';
import { createRemoteVerifier } from '../verifier/remote-verifier.js';
import { createVerifierRuntime } from '../verifier/runtime.js';
import { createTrustState } from '../verifier/trust-state.js';
import { createVerifierRepository } from '../verifier/verifier-repository.js';
import { connectionRecorderReports, createConnectionRecorder } from './connection-recorder.js';
import { createDurableStore } from './durable-store.js';
import type { RecordQueueOptions } from '../verifier/records-queue.js';
import type { MqttListenerOptions, SessionChangeSource, TenantDeletionSource } from './mqtt-listener.js';

/** Where a listener process finds its verifier; plain data, so a primary can send it to workers. */
export type ListenerSource =
  /** A verifier in this process, on the database the API writes to (`npm start`'s workers). */
  | { verifier: 'in-process'; databaseUrl: string; databaseTimeouts?: DatabaseTimeouts; records?: RecordQueueOptions; trustWindowMs?: number }
  /**
   * The API's verifier over HTTP; with a database, live sessions follow its changes and
   * `lastConnectedAt` is recorded.
   */
  | { verifier: 'remote'; url: string; token: string; databaseUrl?: string; databaseTimeouts?: DatabaseTimeouts; records?: RecordQueueOptions };

export type ListenerDependencies = Pick<MqttListenerOptions, 'verifier' | 'sessionChanges' | 'connectionRecorder' | 'tenantDeletions' | 'durable'>;

/** Database connections of one listener process besides its LISTEN connection. */
const POOL_SIZE = 4;

/**
 * Session drops carried by the change feed, for the listener's kill switch, and the moments when
 * changes were missed (`onMissed`), when every live session must be decided again.
 */
export function sessionChangesOf(
  feed: Pick<ChangeFeed, 'subscribe'>,
  missed?: { onMissed(listener: () => void): () => void },
): SessionChangeSource {
  return {
    subscribe: (fn) => feed.subscribe((e) => (e.type === 'session-drop' ? fn(e.change) : undefined)),
    ...(missed ? { onMissed: (fn: () => void) => missed.onMissed(fn) } : {}),
  };
}

const EXISTING_TENANTS = { name: 'certgate_existing_tenants', text: 'SELECT "id" FROM "Tenant" WHERE "id" = ANY($1::text[])' };

/**
 * Tenant deletions carried by the change feed, for the listener to forget their broker state; with
 * the database, which tenants still exist, for when deletions may have been missed.
 */
export function tenantDeletionsOf(feed: Pick<ChangeFeed, 'subscribe'>, prisma?: Pick<PrismaClient, '$queryRawUnsafe'>): TenantDeletionSource {
  return {
    subscribe: (fn) => feed.subscribe((e) => (e.type === 'tenant-deleted' ? fn(e.tenantId) : undefined)),
    ...(prisma
      ? { existing: async (ids: string[]) => new Set((await queryBulk<{ id: string }>(prisma, EXISTING_TENANTS, [ids])).map((r) => r.id)) }
      : {}),
  };
}

/** Builds the listener's dependencies; everything opened is pushed onto `closers`. */
export async function listenerDependencies(
  source: ListenerSource,
  log: Logger,
  closers: Array<() => Promise<unknown>>,
  metrics?: Metrics,
): Promise<ListenerDependencies> {
  const databaseUrl = source.databaseUrl;
  // Without a database (said once, when `certgate mqtt` starts): sessions and retained messages
  // live in memory only, and live sessions are not closed when their CA, device or tenant changes.
  if (!databaseUrl) return { verifier: remoteVerifierOf(source) };
  const feed = await createChangeFeed(databaseUrl, log);
  closers.push(() => feed.close());
  const prisma = createPrismaClient(databaseUrl, { poolSize: source.verifier === 'in-process' ? POOL_SIZE : 2, ...source.databaseTimeouts });
  closers.push(() => prisma.$disconnect());
  const repository = createVerifierRepository(prisma);
  // Sessions and retained messages are written as they change; closed after the listener (closers
  // run last first), with what its closing connections changed.
  const durable = createDurableStore(prisma, log.child({ component: 'mqtt' }));
  closers.push(() => durable.close());
  const recorder = createConnectionRecorder({
    flush: (batch) => repository.touchDevices(batch),
    ...connectionRecorderReports(log, metrics),
    ...(source.records?.closeWaitMs !== undefined ? { closeWaitMs: source.records.closeWaitMs } : {}),
  });
  closers.push(() => recorder.close());
  const deps = (missed: { onMissed(listener: () => void): () => void }) => ({
    sessionChanges: sessionChangesOf(feed, missed),
    tenantDeletions: tenantDeletionsOf(feed, prisma),
    connectionRecorder: recorder,
    durable,
  });
  if (source.verifier === 'remote') {
    // The decisions are the API's; this process only needs to know when it missed a change.
    const counterErrors = createBurstLogger(log);
    const state = createTrustState({
      feed,
      readCounter: async () => BigInt((await queryBulk<{ seq: string }>(prisma, { name: 'certgate_change_counter', text: COUNTER_SQL }, []))[0]!.seq),
      apply: () => {},
      clear: () => {},
      ...(source.databaseTimeouts?.counterTimeoutMs !== undefined ? { timeoutMs: source.databaseTimeouts.counterTimeoutMs } : {}),
      // Fails with every read while the database is away: one line per burst, without a stack.
      onError: (err) => counterErrors.warn('counter', { err: reasonOf(err) }, 'change counter not read'),
    });
    closers.push(async () => state.close());
    return { ...deps(state), verifier: remoteVerifierOf(source) };
  }

  const runtime = createVerifierRuntime({
    prisma,
    feed,
    logger: log,
    ...(metrics ? { metrics } : {}),
    ...(source.records ? { records: source.records } : {}),
    ...(source.trustWindowMs !== undefined ? { trustWindowMs: source.trustWindowMs } : {}),
    ...(source.databaseTimeouts?.counterTimeoutMs !== undefined ? { counterTimeoutMs: source.databaseTimeouts.counterTimeoutMs } : {}),
  });
  // Both wait for the database at once, within the one shutdown wait.
  closers.push(() => Promise.all([runtime.close(), recorder.close()]));
  return { ...deps(runtime), verifier: runtime.verifier };
}

function remoteVerifierOf(source: ListenerSource) {
  if (source.verifier !== 'remote') throw new Error('an in-process verifier needs a database');
  return createRemoteVerifier({ url: source.url, token: source.token });
}
