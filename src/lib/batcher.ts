/**
 * Collects items and writes them in one call every `intervalMs` (or when `maxItems` are waiting),
 * so a burst of connections or decisions becomes a few statements instead of one per event.
 * A failed write is reported and dropped: these are records, never decisions.
 */
export interface Batcher<T> {
  add(item: T): void;
  flush(): Promise<void>;
  close(): Promise<void>;
}

export function createBatcher<T>(
  write: (items: T[]) => Promise<void>,
  opts: { intervalMs?: number; maxItems?: number; onError?: (err: unknown) => void } = {},
): Batcher<T> {
  const intervalMs = opts.intervalMs ?? 250;
  const maxItems = opts.maxItems ?? 1000;
  let pending: T[] = [];
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> = Promise.resolve();

  const flush = (): Promise<void> => {
    if (timer) {
      clearTimeout(timer);
      timer = undefined;
    }
    if (pending.length === 0) return inFlight;
    const items = pending;
    pending = [];
    inFlight = inFlight.then(() => write(items)).catch((err) => opts.onError?.(err));
    return inFlight;
  };

  return {
    add(item) {
      pending.push(item);
      if (pending.length >= maxItems) void flush();
      else if (!timer) {
        timer = setTimeout(() => void flush(), intervalMs);
        timer.unref();
      }
    },
    flush,
    close: flush,
  };
}
