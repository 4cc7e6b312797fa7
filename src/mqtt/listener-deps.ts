/**
 * What a listener process builds for itself when it does not share a process with the API: a
 * listener alone (`certgate mqtt`) and every worker of a multi-process listener (mqtt-worker.ts).
 */
import type { Logger } from 'pino';
import { createChangeFeed, createChangePublisher, type ChangeEvent, type ChangeFeed } from '../db/change-feed.js';
import type { Metrics } from '../plugins/metrics.js';
import { createPrismaClient, type DatabaseTimeouts } from '../db/prisma.js';
import { createRemoteVerifier } from '../verifier/remote-verifier.js';
import { createTrustCache } from '../verifier/trust-cache.js';
import { createVerifierRepository } from '../verifier/verifier-repository.js';
import { createVerifier } from '../verifier/verifier-service.js';
import { connectionRecorderReports, createConnectionRecorder } from './connection-recorder.js';
import type { RecordQueueOptions } from '../verifier/records-queue.js';
import type { MqttListenerOptions, SessionChangeSource, TenantDeletionSource } from './mqtt-listener.js';

/** Where a listener process finds its verifier; plain data, so a primary can send it to workers. */
export type ListenerSource =
  /** A verifier in this process, on the database the API writes to (`npm start`'s workers). */
  | { verifier: 'in-process'; databaseUrl: string; databaseTimeouts?: DatabaseTimeouts; records?: RecordQueueOptions }
  /**
   * The API's verifier over HTTP; with a database, live sessions follow its changes and
   * `lastConnectedAt` is recorded.
   */
  | { verifier: 'remote'; url: string; token: string; databaseUrl?: string; databaseTimeouts?: DatabaseTimeouts; records?: RecordQueueOptions };

export type ListenerDependencies = Pick<MqttListenerOptions, 'verifier' | 'sessionChanges' | 'connectionRecorder' | 'tenantDeletions'>;

/** Database connections of one listener process besides its LISTEN connection. */
const POOL_SIZE = 4;

/** Session drops carried by the change feed, for the listener's kill switch. */
export function sessionChangesOf(feed: Pick<ChangeFeed, 'subscribe'>): SessionChangeSource {
  return {
    subscribe: (fn) => feed.subscribe((e) => (e.type === 'session-drop' ? fn(e.change) : undefined)),
  };
}

/** Tenant deletions carried by the change feed, for the listener to forget their broker state. */
export function tenantDeletionsOf(feed: Pick<ChangeFeed, 'subscribe'>): TenantDeletionSource {
  return {
    subscribe: (fn) => feed.subscribe((e) => (e.type === 'tenant-deleted' ? fn(e.tenantId) : undefined)),
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
  if (!databaseUrl) {
    log.warn('no DATABASE_URL: live sessions are not closed when their CA, device or tenant changes');
    return { verifier: remoteVerifierOf(source) };
  }
  const feed = await createChangeFeed(databaseUrl, log);
  closers.push(() => feed.close());
  const prisma = createPrismaClient(databaseUrl, { poolSize: source.verifier === 'in-process' ? POOL_SIZE : 2, ...source.databaseTimeouts });
  closers.push(() => prisma.$disconnect());
  const repository = createVerifierRepository(prisma);
  const recorder = createConnectionRecorder({
    flush: (batch) => repository.touchDevices(batch),
    ...connectionRecorderReports(log, metrics),
    ...(source.records?.closeWaitMs !== undefined ? { closeWaitMs: source.records.closeWaitMs } : {}),
  });
  closers.push(() => recorder.close());
  const deps = { sessionChanges: sessionChangesOf(feed), tenantDeletions: tenantDeletionsOf(feed), connectionRecorder: recorder };
  if (source.verifier === 'remote') return { ...deps, verifier: remoteVerifierOf(source) };

  // The same wiring as the API's verifier (app.ts): caches filled on demand, dropped by the feed,
  // and this process's own changes applied at once.
  const cache = createTrustCache(repository, { onError: (err) => log.warn({ err }, 'verifier cache not loaded') });
  const notify = createChangePublisher((sql, ...params) => prisma.$executeRawUnsafe(sql, ...params));
  const publisher = {
    async publish(events: ChangeEvent[]) {
      for (const e of events) cache.apply(e);
      await notify.publish(events);
    },
  };
  const unsubscribe = feed.subscribe((e) => cache.apply(e));
  const unresync = feed.onResync(() => cache.clear());
  const verifier = createVerifier({ repository, cache, publisher, logger: log, ...(metrics ? { metrics } : {}), ...(source.records ? { records: source.records } : {}) });
  closers.push(async () => {
    unsubscribe();
    unresync();
    // Both wait for the database at once, within the one shutdown wait.
    await Promise.all([verifier.close(), recorder.close()]);
  });
  return { ...deps, verifier };
}

function remoteVerifierOf(source: ListenerSource) {
  if (source.verifier !== 'remote') throw new Error('an in-process verifier needs a database');
  return createRemoteVerifier({ url: source.url, token: source.token });
}
