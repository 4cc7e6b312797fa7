/**
 * Records waiting to be written (auth events, sightings), written in batches behind the requests
 * that made them, and kept until they are written: a batch that fails stays at the head of the
 * queue and is tried again, in order, with a growing pause, for as long as the database is away.
 * What cannot be kept is counted and reported (`onDropped`), never lost unseen: an item that finds
 * the queue full, and what is still unwritten when `close`'s wait ends.
 *
 * Each batch keeps its identity across attempts (`Batch.id`): a write whose outcome is unknown (the
 * connection was lost after COMMIT was sent) is tried again with the same id, so the writer can
 * tell a batch it already wrote.
 */
import crypto from 'node:crypto';

export interface Batch<T> {
  /** The same for every attempt of this batch. */
  id: string;
  items: T[];
}

export interface DurableQueueOptions {
  /** Pause before a batch is written, so one write carries a burst (default 250 ms). */
  intervalMs?: number;
  /** Items per write at most; a full batch is written at once (default 1,000). */
  maxBatch?: number;
  /** Items waiting at most, in memory; more are dropped (default 100,000). */
  limit?: number;
  /** First pause after a failed write, doubled after each failure up to `maxRetryMs` (default 100 ms). */
  retryMs?: number;
  maxRetryMs?: number;
  /** How long `close` waits by default (5,000 ms). */
  closeWaitMs?: number;
  /** A write failed; `failures` counts the failures in a row (1 for the first of an outage). */
  onError?: (err: unknown, failures: number, waiting: number) => void;
  /** Writes work again after `failures` failures in a row; `dropped` items found the queue full meanwhile. */
  onRecovered?: (failures: number, waiting: number, dropped: number) => void;
  /**
   * Items were dropped: because the queue was full, or unwritten when `close` stopped waiting.
   * `firstOfBurst`: the first drop since writes last succeeded (log that one; count them all).
   */
  onDropped?: (count: number, why: 'full' | 'shutdown', firstOfBurst: boolean) => void;
}

export interface DurableQueue<T> {
  add(item: T): void;
  /**
   * Writes what is waiting now without waiting for the timer or a retry pause; resolves once it
   * is written, or once an attempt failed (the items stay queued and are tried again).
   */
  flush(): Promise<void>;
  /**
   * Stops taking items and writes what is waiting, trying again as usual for at most `waitMs`;
   * what is still unwritten then is dropped, and reported.
   */
  close(waitMs?: number): Promise<void>;
  /** Items waiting, the batch being written included. */
  readonly waiting: number;
}

export function createDurableQueue<T>(write: (batch: Batch<T>) => Promise<void>, opts: DurableQueueOptions = {}): DurableQueue<T> {
  const intervalMs = opts.intervalMs ?? 250;
  const maxBatch = opts.maxBatch ?? 1_000;
  const limit = opts.limit ?? 100_000;
  const retryMs = opts.retryMs ?? 100;
  const maxRetryMs = opts.maxRetryMs ?? 5_000;

  /** Items not yet in a batch, oldest first. */
  let items: T[] = [];
  /** The batch being written or to be tried again: always written before `items`. */
  let head: Batch<T> | undefined;
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;
  /** The write in progress, if any. */
  let writing: Promise<boolean> | undefined;
  let closed = false;
  /** Items dropped as the queue was full since writes last succeeded. */
  let droppedInBurst = 0;
  let droppedAfterClose = 0;

  const waiting = () => items.length + (head?.items.length ?? 0);

  const schedule = (delayMs: number) => {
    if (timer || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      void drain();
    }, delayMs);
    timer.unref();
  };

  /** One attempt at the head batch (made from the oldest items if there is none); true when written. */
  const attempt = (): Promise<boolean> => {
    if (writing) return writing;
    if (!head) {
      if (items.length === 0) return Promise.resolve(true);
      head = { id: crypto.randomUUID(), items: items.length <= maxBatch ? items : items.slice(0, maxBatch) };
      items = items.length <= maxBatch ? [] : items.slice(maxBatch);
    }
    const batch = head;
    writing = write(batch)
      .then(
        () => {
          head = undefined;
          if (failures > 0 || droppedInBurst > 0) opts.onRecovered?.(failures, waiting(), droppedInBurst);
          failures = 0;
          droppedInBurst = 0;
          return true;
        },
        (err: unknown) => {
          failures++;
          opts.onError?.(err, failures, waiting());
          return false;
        },
      )
      .finally(() => {
        writing = undefined;
      });
    return writing;
  };

  const retryPause = () => Math.min(maxRetryMs, retryMs * 2 ** Math.min(failures - 1, 20));

  /** Writes batches while full ones wait; then waits for the timer, or for a retry pause. */
  const drain = async (): Promise<boolean> => {
    for (;;) {
      // What waited through an outage has waited long enough: written at once when it ends.
      const catchingUp = failures > 0;
      if (!(await attempt())) {
        schedule(retryPause());
        return false;
      }
      if (items.length === 0) return true;
      if (items.length < maxBatch && !closed && !catchingUp) {
        schedule(intervalMs);
        return true;
      }
    }
  };

  return {
    add(item) {
      if (closed) {
        opts.onDropped?.(1, 'shutdown', ++droppedAfterClose === 1);
        return;
      }
      if (waiting() >= limit) {
        opts.onDropped?.(1, 'full', ++droppedInBurst === 1);
        return;
      }
      items.push(item);
      if (failures > 0) return; // the retry timer is set
      if (items.length >= maxBatch) {
        if (!writing) void drain();
      } else schedule(intervalMs);
    },
    async flush() {
      if (timer) {
        clearTimeout(timer);
        timer = undefined;
      }
      // Everything waiting now: a write under way first, then batch after batch.
      if (writing) await writing;
      while (waiting() > 0) {
        if (!(await attempt())) {
          schedule(retryPause());
          return;
        }
      }
    },
    async close(waitMs = opts.closeWaitMs ?? 5_000) {
      closed = true;
      if (timer) {
        clearTimeout(timer);
        timer = undefined;
      }
      const deadline = Date.now() + waitMs;
      if (writing) await writing;
      while (waiting() > 0 && Date.now() < deadline) {
        if (await attempt()) continue;
        const pause = Math.min(retryPause(), deadline - Date.now());
        if (pause > 0) await new Promise((r) => setTimeout(r, pause));
      }
      const left = waiting();
      if (left > 0) {
        head = undefined;
        items = [];
        opts.onDropped?.(left, 'shutdown', true);
      }
    },
    get waiting() {
      return waiting();
    },
  };
}
