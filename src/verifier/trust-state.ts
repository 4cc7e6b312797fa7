/**
 * Whether this process may trust what it keeps of the trust state (its caches and kept
 * decisions), with one guarantee:
 *
 *   A decision is made on a state at least as new as every change committed `windowMs` (2 ms by
 *   default) or more before the decision began, or it is not made (the caller answers
 *   "unavailable" and fails closed).
 *
 * How: every change increases the change counter in its own transaction and sends its
 * notification from there (src/db/change-feed.ts). `applied` is the counter value this process's
 * caches reflect. A decision trusts the caches without a read when a counter read begun less than
 * `windowMs` before it found them current (the window: a change committed inside it usually
 * arrives by notification anyway, and otherwise at the next read); else it first reads the
 * counter (one indexed read, shared by the decisions that arrive while it is under way, and always
 * begun after the decision arrived). With `windowMs` 0 every decision reads. What the read finds:
 * - not above `applied`: no change was missed; the caches are current.
 * - higher: the notifications of those changes are awaited, over up to three more reads (PostgreSQL
 *   may answer the read a moment before it sends them); if they do not come (the feed was down),
 *   every cache is dropped, `applied` becomes the value read, and the live sessions are re-checked
 *   (`onMissed`), since a session-closing notification may be among those missed.
 * - the read fails or takes longer than `timeoutMs`: the decision is unavailable, and a LISTEN
 *   connection that did not answer is dropped so that it reconnects.
 * Notifications move `applied` on one at a time; one that skips a number means some were lost,
 * which counts as missed too. `applied` never goes back. The counter is also read every second
 * when no decision reads it, so a process that holds sessions but decides nothing (a listener
 * asking another process's verifier) finds a missed change within about a second.
 */
import { VerifierUnavailableError } from './verifier-types.js';
import type { ChangeEvent, ChangeFeed, ChangeNotice } from '../db/change-feed.js';

export interface TrustStateDeps {
  /** The change feed; without it every change is found by the counter alone. */
  feed?: Pick<ChangeFeed, 'onNotice' | 'onResync' | 'readCounter' | 'connected'> & Partial<Pick<ChangeFeed, 'reset'>>;
  /** Reads the counter through the pool, for when the feed is down. */
  readCounter: () => Promise<bigint>;
  /** Applies one change to the caches. */
  apply: (event: ChangeEvent) => void;
  /** Drops every cache. */
  clear: () => void;
  timeoutMs?: number;
  /** How long after a counter read began that found the caches current they are trusted without another; 0: never. */
  windowMs?: number;
  /** How often the counter is read when no decision reads it. */
  pollMs?: number;
  onError?: (err: unknown) => void;
}

/** How long, and after how many more reads, a decision waits for notifications its counter read counts before dropping the caches. */
const NOTICE_WAIT_MS = 100;
const NOTICE_READS = 3;
/** How long a counter read that found the caches current vouches for them, by default. */
export const TRUST_WINDOW_MS = 2;

export interface TrustState {
  /** Resolves once the caches reflect every change committed before the call; else rejects with VerifierUnavailableError. */
  current(): Promise<void>;
  /** Called after changes were missed and the caches dropped: live sessions must be re-checked. */
  onMissed(listener: () => void): () => void;
  close(): void;
}

export function createTrustState(deps: TrustStateDeps): TrustState {
  const timeoutMs = deps.timeoutMs ?? 2_000;
  const pollMs = deps.pollMs ?? 1_000;
  const windowMs = deps.windowMs ?? TRUST_WINDOW_MS;
  /** When the newest read that found the caches current began (performance.now()). */
  let confirmedAt = -Infinity;
  let applied: bigint | undefined;
  let closed = false;
  const missedListeners = new Set<() => void>();
  /** Decisions waiting for the notifications of changes their counter read already counts. */
  const waiters = new Set<{ seq: bigint; resolve: () => void }>();

  const advance = (seq: bigint): void => {
    if (applied !== undefined && seq <= applied) return;
    applied = seq;
    for (const w of waiters) if (w.seq <= seq) w.resolve();
  };

  const missed = (seq: bigint | undefined): void => {
    deps.clear();
    if (seq !== undefined) advance(seq);
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
    if (seq === applied + 1n) advance(seq);
    else missed(seq);
  });

  const readOnce = (): Promise<bigint> => {
    const began = performance.now();
    const overFeed = deps.feed?.connected === true;
    const read = overFeed ? deps.feed!.readCounter() : deps.readCounter();
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      read,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          // A LISTEN connection that does not answer may be dead without knowing it (a dropped
          // NAT entry, a half-open socket): it is dropped, so it reconnects and resyncs.
          if (overFeed) deps.feed!.reset?.();
          reject(new Error(`the change counter was not read within ${timeoutMs} ms`));
        }, timeoutMs);
      }),
    ])
      .then((seq) => {
        if (applied !== undefined && seq <= applied && began > confirmedAt) confirmedAt = began;
        return seq;
      })
      .finally(() => clearTimeout(timer));
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

  /** Resolves once `applied` reaches `seq`, or after `ms`. */
  const waitApplied = (seq: bigint, ms: number): Promise<void> =>
    new Promise<void>((resolve) => {
      const w = { seq, resolve: () => done() };
      const timer = setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(w);
        resolve();
      };
      waiters.add(w);
    });

  let started = false;
  const sync = async (seq: bigint): Promise<void> => {
    if (applied !== undefined && seq <= applied) return;
    if (applied === undefined) {
      // The starting point. Before the first read nothing was decided here, so nothing was missed;
      // after a first read that failed, sessions may have been taken meanwhile (a listener that
      // asks another process's verifier): they are decided again.
      const first = !started;
      started = true;
      deps.clear();
      advance(seq);
      if (!first) for (const l of missedListeners) l();
      return;
    }
    // PostgreSQL may answer the read before it sends the notifications of the changes the read
    // counts (a change committed in the very instant of the read): they follow it on the same
    // connection. Another read's answer comes after them (a busy event loop may see a timer expire
    // before it reads the socket, so waiting alone is not enough); then a moment more.
    for (let i = 0; i < NOTICE_READS && deps.feed?.connected && (applied === undefined || applied < seq); i++) {
      try {
        await read();
      } catch {
        break;
      }
      if (applied !== undefined && applied >= seq) break;
      await waitApplied(seq, NOTICE_WAIT_MS);
    }
    if (applied === undefined || applied < seq) missed(seq);
  };

  const check = (): Promise<void> =>
    read().then(sync, (err: unknown) => {
      started = true;
      throw err;
    });

  // Read at once and then every `pollMs`: a change missed before the first decision, behind a
  // LISTEN connection that died without knowing it, or while no decision is asked for (a listener
  // holding sessions) is found within a second of the database answering.
  void check().catch(() => {});
  const poll = setInterval(() => {
    if (!inflight) void check().catch((err: unknown) => deps.onError?.(err));
  }, pollMs);
  poll.unref();

  // A LISTEN connection that comes back has missed what was sent meanwhile, or not: the counter says.
  const unresync = deps.feed?.onResync(() => {
    void check().catch((err: unknown) => deps.onError?.(err));
  });

  return {
    async current() {
      if (applied !== undefined && performance.now() - confirmedAt < windowMs) return;
      let seq: bigint;
      try {
        seq = await read();
      } catch (err) {
        started = true;
        throw new VerifierUnavailableError(`the store cannot be reached: ${(err as Error).message}`);
      }
      // The usual case, without another turn of the event loop: nothing changed since.
      if (applied !== undefined && seq <= applied) return;
      await sync(seq);
    },
    onMissed(listener) {
      missedListeners.add(listener);
      return () => missedListeners.delete(listener);
    },
    close() {
      if (closed) return;
      closed = true;
      clearInterval(poll);
      unnotice?.();
      unresync?.();
      missedListeners.clear();
      for (const w of waiters) w.resolve();
    },
  };
}
