/**
 * The verifier's records (auth events, sightings) on their way to the database: a durable queue
 * (lib/durable-queue.ts) whose failures are logged once per outage and whose drops are counted in
 * `certgate_records_dropped_total` and logged once per burst.
 */
import type { Logger } from 'pino';
import { createDurableQueue, type Batch, type DurableQueue } from '../lib/durable-queue.js';
import type { Metrics } from '../plugins/metrics.js';
import { reasonOf } from '../lib/logger.js';

export interface RecordQueueOptions {
  /** Records of each kind waiting at most (default 100,000); more are dropped and counted. */
  limit?: number;
  /** How long `close` waits for the database to take what waits (default 5,000 ms). */
  closeWaitMs?: number;
  /** Pause before a batch is written (default 250 ms). */
  intervalMs?: number;
}

export type RecordKind = 'auth_event' | 'sighting' | 'last_connected';

const NAMES: Record<RecordKind, string> = { auth_event: 'auth events', sighting: 'observed credentials', last_connected: 'lastConnectedAt' };

export function recordQueue<T>(
  kind: RecordKind,
  write: (batch: Batch<T>) => Promise<void>,
  deps: { logger?: Logger; metrics?: Metrics; records?: RecordQueueOptions },
): DurableQueue<T> {
  const { logger, metrics } = deps;
  const name = NAMES[kind];
  return createDurableQueue(write, {
    ...(deps.records?.closeWaitMs !== undefined ? { closeWaitMs: deps.records.closeWaitMs } : {}),
    ...(deps.records?.limit !== undefined ? { limit: deps.records.limit } : {}),
    ...(deps.records?.intervalMs !== undefined ? { intervalMs: deps.records.intervalMs } : {}),
    onError(err, failures, waiting) {
      if (failures === 1) logger?.warn({ reason: reasonOf(err), waiting }, `${name} not written yet; kept and tried again until the database takes them`);
    },
    onRecovered(failures, waiting, dropped) {
      logger?.info({ failures, waiting, dropped }, `${name} written again`);
    },
    onDropped(count, why, firstOfBurst) {
      metrics?.recordsDropped.labels(kind, why === 'full' ? 'queue_full' : 'shutdown').inc(count);
      if (!firstOfBurst) return;
      if (why === 'full') logger?.error({ limit: deps.records?.limit ?? 100_000 }, `${name} dropped: too many wait for the database (certgate_records_dropped_total counts them)`);
      else logger?.error({ count }, `${name} dropped: still unwritten when shutdown stopped waiting for the database`);
    },
  });
}
