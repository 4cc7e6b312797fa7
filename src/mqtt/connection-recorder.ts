/**
 * `lastConnectedAt` without a database write per connection: connections are coalesced per device
 * (the latest time wins) and handed to `flush` once per interval, so a storm of reconnects costs
 * one statement per interval whatever its size.
 */

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
}

export interface ConnectionRecorder {
  connected(tenantId: string, deviceId: string, at: Date): void;
  /** Writes what is waiting now (and waits for a flush already running). */
  flush(): Promise<void>;
  /** Stops the timer after a last flush. */
  close(): Promise<void>;
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
      } catch (err) {
        opts.onError?.(err, batch.size);
        // Keep the times for the next flush unless newer ones arrived meanwhile; the cap keeps
        // a database that stays down from growing this without bound.
        for (const [id, at] of batch) {
          if (pending.size >= maxPending * 10 && !pending.has(id)) break;
          merge(pending, id, at);
        }
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
    async close() {
      closed = true;
      await flush();
    },
    get pending() {
      return pending.size;
    },
  };
}
