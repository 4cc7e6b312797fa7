/**
 * The verifier runtime: trust state, change feed and decision logic, built by one function for
 * every process that decides (the API, each MQTT worker, a standalone listener on the database).
 */
import type { Logger } from 'pino';
import { COUNTER_SQL, createChangePublisher, type ChangeEvent, type ChangeFeed, type ChangePublisher, type SqlExecutor } from '../db/change-feed.js';
import { queryBulk, type PrismaClient } from '../db/prisma.js';
import { createBurstLogger, reasonOf } from '../lib/logger.js';
import type { Metrics } from '../plugins/metrics.js';
import type { RecordQueueOptions } from './records-queue.js';
import { createTrustCache, type TrustCache } from './trust-cache.js';
import { createTrustState, type TrustState } from './trust-state.js';
import { createVerifierRepository } from './verifier-repository.js';
import { createVerifier, type CertgateVerifier } from './verifier-service.js';

export interface VerifierRuntimeDeps {
  prisma: PrismaClient;
  /** The LISTEN feed of the database; without it every change is found by the change counter alone. */
  feed?: Pick<ChangeFeed, 'subscribe' | 'onNotice' | 'onResync' | 'readCounter' | 'connected'>;
  /** Announces changes (tests wrap it to see them); by default NOTIFY through `prisma`. */
  publisher?: ChangePublisher;
  metrics?: Metrics;
  logger?: Logger;
  /** How many auth events and sightings may wait for the database, and how long `close` waits for them. */
  records?: RecordQueueOptions;
  /** How long reading the change counter may take before a decision is unavailable. */
  counterTimeoutMs?: number;
  /** How long a counter read that found the caches current vouches for them (`TRUST_WINDOW_MS`). */
  trustWindowMs?: number;
}

export interface VerifierRuntime {
  verifier: CertgateVerifier;
  cache: TrustCache;
  state: TrustState;
  /** What services announce their changes through. */
  publisher: ChangePublisher;
  /** Changes were missed and the caches dropped: every live session must be decided again. */
  onMissed(listener: () => void): () => void;
  close(): Promise<void>;
}

const COUNTER = { name: 'certgate_change_counter', text: COUNTER_SQL };

export function createVerifierRuntime(deps: VerifierRuntimeDeps): VerifierRuntime {
  const { prisma, feed, logger } = deps;
  // Reads fail one after another while the database is away: one line per burst, without a stack.
  const databaseErrors = logger ? createBurstLogger(logger) : undefined;
  const publisher = deps.publisher ?? createChangePublisher(prisma as SqlExecutor);
  const repository = createVerifierRepository(prisma, { announce: (events, db) => publisher.publish(events, db) });
  const cache = createTrustCache(repository, { onError: (err) => databaseErrors?.warn('cache', { err: reasonOf(err) }, 'verifier cache not loaded') });
  const state = createTrustState({
    ...(feed ? { feed } : {}),
    readCounter: async () => BigInt((await queryBulk<{ seq: string }>(prisma, COUNTER, []))[0]!.seq),
    apply: (e: ChangeEvent) => cache.apply(e),
    clear: () => cache.clear(),
    ...(deps.counterTimeoutMs !== undefined ? { timeoutMs: deps.counterTimeoutMs } : {}),
    ...(deps.trustWindowMs !== undefined ? { windowMs: deps.trustWindowMs } : {}),
    ...(databaseErrors ? { onError: (err: unknown) => databaseErrors.warn('counter', { err: reasonOf(err) }, 'change counter not read') } : {}),
  });
  const verifier = createVerifier({
    repository,
    cache,
    publisher,
    state,
    ...(deps.metrics ? { metrics: deps.metrics } : {}),
    ...(logger ? { logger } : {}),
    ...(deps.records ? { records: deps.records } : {}),
  });
  return {
    verifier,
    cache,
    state,
    publisher,
    onMissed: (listener) => state.onMissed(listener),
    async close() {
      state.close();
      await verifier.close();
    },
  };
}
