/**
 * `lastConnectedAt` without a database write per connection: connections are coalesced per device
 * (the latest time wins) and handed to `flush` once per interval, so a storm of reconnects costs
 * one statement per interval whatever its size.
 */
import { reasonOf } from '../lib/logger.js';

export interface ConnectionRecorderOptions {
  /** Writes one batch (device id -> latest connection time); wired to one UPDATE per call. */
  flush: (batch: Map<string, Date>) => Promise<void>;
  /** Default 1000 ms. */
  intervalMs?: number;
  /**
   * Devices waiting at most; past it a batch is flushed at once instead of waiting for the timer.
   * Default 10 000.
   */
  maxPending?: number;
  /** A failed flush is reported here; its entries are kept for the next flush. */
  onError?: (err: unknown, batchSize: number) => void;
  /**
   * Devices whose time could not be kept: more than `maxPending * 10` wait while the database is
   * away, or still unwritten when `close` stopped waiting. `firstOfBurst`: the first drop since a
   * flush last succeeded (log that one; count them all).
   */
  onDropped?: (count: number, why: 'full' | 'shutdown', firstOfBurst: boolean) => void;
  /** How long `close` keeps trying to write what waits (default 5,000 ms). */
  closeWaitMs?: number;
}

export interface ConnectionRecorder {
  connected(tenantId: string, deviceId: string, at: Date): void;
  /** Writes what is waiting now (and waits for a flush already running). */
  flush(): Promise<void>;
  /** Stops the timer, then writes what waits, trying again for at most `waitMs`. */
  close(waitMs?: number): Promise<void>;
  readonly pending: number;
}

export function createConnectionRecorder(opts: ConnectionRecorderOptions): ConnectionRecorder {
  const intervalMs = opts.intervalMs ?? 1_000;
  const maxPending = opts.maxPending ?? 10_000;
  let pending = new Map<string, Date>();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  let queued = false;
  let closed = false;
  let droppedInBurst = 0;
  const dropped = (count: number, why: 'full' | 'shutdown') => {
    const first = droppedInBurst === 0;
    droppedInBurst += count;
    opts.onDropped?.(count, why, first);
  };

  const merge = (into: Map<string, Date>, deviceId: string, at: Date): void => {
    const prev = into.get(deviceId);
    if (!prev || prev.getTime() < at.getTime()) into.set(deviceId, at);
  };

  const flush = (): Promise<void> => {
    if (timer) {
      clearTimeout(timer);
      timer = undefined;
    }
    // One write at a time: the next batch starts after the previous one settled, and at most one
    // waits behind it (it takes whatever has arrived by the time it starts).
    if (queued) return running;
    queued = true;
    running = running.then(async () => {
      queued = false;
      if (pending.size === 0) return;
      const batch = pending;
      pending = new Map();
      try {
        await opts.flush(batch);
        droppedInBurst = 0;
      } catch (err) {
        opts.onError?.(err, batch.size);
        // Keep the times for the next flush unless newer ones arrived meanwhile; the cap keeps
        // a database that stays down from growing this without bound (what it turns away is counted).
        let lost = 0;
        for (const [id, at] of batch) {
          if (pending.size >= maxPending * 10 && !pending.has(id)) lost++;
          else merge(pending, id, at);
        }
        if (lost) dropped(lost, 'full');
        schedule();
      }
    });
    return running;
  };

  const schedule = (): void => {
    if (timer || closed || pending.size === 0) return;
    timer = setTimeout(() => void flush(), intervalMs);
    timer.unref();
  };

  return {
    connected(_tenantId, deviceId, at) {
      merge(pending, deviceId, at);
      if (pending.size >= maxPending) void flush();
      else schedule();
    },
    flush,
    async close(waitMs = opts.closeWaitMs ?? 5_000) {
      closed = true;
      const deadline = Date.now() + waitMs;
      await flush();
      while (pending.size > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, Math.min(intervalMs, Math.max(0, deadline - Date.now()))));
        await flush();
      }
      if (pending.size > 0) {
        const left = pending.size;
        pending = new Map();
        droppedInBurst = 0;
        dropped(left, 'shutdown');
      }
    },
    get pending() {
      return pending.size;
    },
  };
}

/** A recorder's reports: failures logged at most once a minute, drops counted and logged once per burst. */
export function connectionRecorderReports(
  log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void; error(obj: object, msg: string): void },
  metrics?: { recordsDropped: { labels(record: string, reason: string): { inc(n: number): void } } },
): Pick<ConnectionRecorderOptions, 'onError' | 'onDropped'> {
  let failing = false;
  return {
    onError(err, batchSize) {
      if (failing) return;
      failing = true;
      log.warn({ reason: reasonOf(err), batchSize }, 'lastConnectedAt not written yet; kept and tried again until the database takes it');
      setTimeout(() => (failing = false), 60_000).unref();
    },
    onDropped(count, why, firstOfBurst) {
      metrics?.recordsDropped.labels('last_connected', why === 'full' ? 'queue_full' : 'shutdown').inc(count);
      if (firstOfBurst) log.error({ count, why }, 'lastConnectedAt dropped (certgate_records_dropped_total counts them)');
    },
  };
}
