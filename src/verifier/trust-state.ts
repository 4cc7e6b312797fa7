/**
 * Whether this process may trust what it keeps of the trust state (its caches and kept
 * decisions), with one guarantee:
 *
 *   A decision is made on a state at least as new as every change committed before the decision
 *   began, or it is not made (the caller answers "unavailable" and fails closed).
 *
 * How: every change increases the change counter in its own transaction and sends its
 * notification from there (src/db/change-feed.ts). `applied` is the counter value this process's
 * caches reflect. Each decision first reads the counter (one indexed read, shared by the decisions
 * that arrive while it is under way, and always begun after the decision arrived):
 * - equal to `applied`: no change was missed; the caches are current.
 * - higher: a change has not reached this process (its feed was down, or the notification is a
 *   moment late): every cache is dropped, `applied` becomes the value read, and the live sessions
 *   are re-checked (`onMissed`), since a session-closing notification may be among those missed.
 * - the read fails or takes longer than `timeoutMs`: the decision is unavailable.
 * Notifications move `applied` on one at a time; one that skips a number means some were lost,
 * which counts as missed too. The read goes through the LISTEN connection when it is up, so the
 * notifications it counts arrive before its answer, and through the pool otherwise.
 */
import { VerifierUnavailableError } from './verifier-types.js';
import type { ChangeEvent, ChangeFeed, ChangeNotice } from '../db/change-feed.js';

export interface TrustStateDeps {
  /** The change feed; without it every change is found by the counter alone. */
  feed?: Pick<ChangeFeed, 'onNotice' | 'onResync' | 'readCounter' | 'connected'>;
  /** Reads the counter through the pool, for when the feed is down. */
  readCounter: () => Promise<bigint>;
  /** Applies one change to the caches. */
  apply: (event: ChangeEvent) => void;
  /** Drops every cache. */
  clear: () => void;
  timeoutMs?: number;
  onError?: (err: unknown) => void;
}

export interface TrustState {
  /** Resolves once the caches reflect every change committed before the call; else rejects with VerifierUnavailableError. */
  current(): Promise<void>;
  /** Called after changes were missed and the caches dropped: live sessions must be re-checked. */
  onMissed(listener: () => void): () => void;
  close(): void;
}

export function createTrustState(deps: TrustStateDeps): TrustState {
  const timeoutMs = deps.timeoutMs ?? 2_000;
  let applied: bigint | undefined;
  const missedListeners = new Set<() => void>();

  const missed = (seq: bigint | undefined): void => {
    deps.clear();
    applied = seq;
    for (const l of missedListeners) l();
  };

  const unnotice = deps.feed?.onNotice((notice: ChangeNotice) => {
    const { seq, events } = notice;
    if (seq === undefined) {
      for (const e of events ?? []) deps.apply(e);
      return;
    }
    if (events === null) {
      // Too large to describe: everything counts as changed, sessions included.
      if (applied === undefined || seq > applied) missed(seq);
      return;
    }
    for (const e of events) deps.apply(e);
    if (applied === undefined || seq <= applied) return;
    if (seq === applied + 1n) applied = seq;
    else missed(seq);
  });

  const readOnce = (): Promise<bigint> => {
    const read = deps.feed?.connected ? deps.feed.readCounter() : deps.readCounter();
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      read,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the change counter was not read within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  };

  // One read at a time. A decision that arrives while a read is under way waits for the next one:
  // the read under way may have been answered before the decision's own cause was committed.
  let inflight: Promise<bigint> | undefined;
  let next: Promise<bigint> | undefined;
  const read = (): Promise<bigint> => {
    if (!inflight) {
      const p = readOnce();
      inflight = p;
      const done = () => {
        if (inflight === p) inflight = undefined;
      };
      p.then(done, done);
      return p;
    }
    next ??= inflight.then(
      () => undefined,
      () => undefined,
    ).then(() => {
      next = undefined;
      return read();
    });
    return next;
  };

  const sync = (seq: bigint): void => {
    // A read answered from before notifications that have been applied since missed nothing.
    if (applied !== undefined && seq <= applied) return;
    if (applied === undefined) {
      // The starting point: nothing was kept or decided before it, so nothing was missed.
      deps.clear();
      applied = seq;
      return;
    }
    missed(seq);
  };
  // Read at once, so a change missed before the first decision is still found (a listener that
  // asks another process's verifier decides nothing here, but holds sessions).
  read().then(sync, () => {});

  // A LISTEN connection that comes back has missed what was sent meanwhile, or not: the counter says.
  const unresync = deps.feed?.onResync(() => {
    read().then(sync, (err: unknown) => deps.onError?.(err));
  });

  return {
    async current() {
      let seq: bigint;
      try {
        seq = await read();
      } catch (err) {
        throw new VerifierUnavailableError(`the store cannot be reached: ${(err as Error).message}`);
      }
      sync(seq);
    },
    onMissed(listener) {
      missedListeners.add(listener);
      return () => missedListeners.delete(listener);
    },
    close() {
      unnotice?.();
      unresync?.();
      missedListeners.clear();
    },
  };
}
