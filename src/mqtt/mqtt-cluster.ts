/**
 * The mTLS MQTT listener on several processes sharing one port (MQTT_WORKERS > 1).
 *
 * Why: a TLS handshake with a client certificate costs the server about a millisecond of CPU and
 * a Node process runs on one core, so a fleet reconnecting at once is bound by one core unless
 * the listener spreads over several. Each worker (node:cluster) runs a whole listener
 * (mqtt-listener.ts) with its own verifier; workers accept from the shared socket themselves
 * (SCHED_NONE), so the primary, which serves the API, does no work per connection, and a busy
 * worker simply accepts fewer.
 *
 * MQTT across workers, carried by the primary over IPC (this file):
 * - Publish: a message published on one worker goes to the other workers where the tenant has a
 *   subscription, which route it to their own sessions of the same tenant. The tenant id travels
 *   with the message and each worker keeps its own per-tenant spaces, so isolation stays as
 *   structural as in one process.
 * - Interest: each worker tells the primary when a tenant gets its first subscription there (or
 *   its first stored session with one), and when it has none any more; the primary tells every
 *   other worker. A rise is answered once every other worker knows it, and the SUBACK (or the
 *   CONNACK of a session handed over) waits for that answer: a message published after it, on any
 *   worker, is sent to the subscriber's worker. A publisher's acknowledgement waits for the other
 *   workers to store a message only when one of them has a stored session subscribing in the tenant.
 * - Retained: every worker keeps every tenant's retained messages. The publishing worker stores
 *   one at once (its own clients see it immediately), and the primary, which sees all retained
 *   writes in one order, echoes each back to it and forwards it to the others in that order: every
 *   worker ends with the same last write. The primary keeps a copy for workers started later.
 * - Sessions: the primary keeps a directory (tenant, client id) -> (worker, claim). Each CONNECT
 *   claims its client id; a previous holder on another worker closes its connection (takeover,
 *   MQTT 3.1.4-2) and ends the session, or hands the session's state over when the client resumes
 *   it (clean start 0). Claims are numbered per worker, so a stale take-over never closes a newer
 *   connection: whichever claim reached the primary last holds the session.
 * - Kill switch: every worker follows the PostgreSQL change feed itself, as a lone listener does.
 * - Shared subscriptions: each worker tells the primary when a `$share/...` group gets its first
 *   member there or loses its last; the primary tells every worker which workers have members of
 *   each group. The worker a message is published on gives each matching group to one of those
 *   workers, in turn, in the message itself, and only that worker hands it to one of its members.
 * - Tenant deletion: each worker forgets the tenant when the change feed says it was deleted, and
 *   tells the primary, which drops its copy of the tenant's retained messages and tells every
 *   worker again (in its order of retained writes, so a retained message relayed just before the
 *   deletion cannot bring the tenant back on a worker, nor into the copy for new workers).
 */
import cluster, { type Worker } from 'node:cluster';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { MetricsSnapshot } from '../plugins/metrics.js';
import { Broker, DEFAULT_LIMITS, type Interest, type Message, type SessionState } from './broker.js';
import type { DurableStore, StoredSession } from './durable-store.js';
import type { ListenerSource } from './listener-deps.js';
import type { ListenerBus, ListenerBusHandlers, ListenerLimits, MqttListener, MqttListenerStats, SessionClaim } from './mqtt-listener.js';

/** Everything a worker needs to start; sent over IPC, so plain data. */
export interface WorkerSpec {
  source: ListenerSource;
  host: string;
  port: number;
  tls: { cert: string; key: string; ca?: string };
  limits?: ListenerLimits;
  logLevel: string;
  /** LOG_FORMAT: workers write to the same stdout as the main process, in its format. */
  logFormat?: 'auto' | 'pretty' | 'json';
  /** How long a resuming CONNECT waits for its session from another worker. */
  handOverTimeoutMs: number;
}

/** Primary to worker. */
export type ToWorker =
  | { mqtt: 'start'; spec: WorkerSpec }
  /** `ack`: the worker answers `stored` once what the message changed in its stored sessions is written. */
  | { mqtt: 'publish'; tenantId: string; message: Message; ack?: number }
  /** Every other worker stored what the message of `ack` changed (`ok`), or one of them could not. */
  | { mqtt: 'stored'; ack: number; ok: boolean }
  | { mqtt: 'retain'; tenantId: string; message: Message }
  | { mqtt: 'take-over'; claim: SessionClaim; requestId?: number }
  | { mqtt: 'handed-over'; requestId: number; state?: SessionState }
  /** A stored session to keep (as claim 0) until its client comes back. */
  | { mqtt: 'adopt'; tenantId: string; state: SessionState }
  | { mqtt: 'snapshot-done' }
  | { mqtt: 'drop-tenant'; tenantId: string }
  | { mqtt: 'shared'; tenantId: string; key: string; filter: string; workers: number[] }
  /** Another worker's interest in the tenant's messages; `ack`: answer `interest-known`. */
  | { mqtt: 'interest'; tenantId: string; worker: number; level: Interest; ack?: number }
  /** Every other worker knows this worker's interest announced as `requestId`. */
  | { mqtt: 'interest-known'; requestId: number }
  | { mqtt: 'stats?'; requestId: number }
  | { mqtt: 'metrics?'; requestId: number }
  | { mqtt: 'stop' }
  | { mqtt: 'batch'; messages: ToWorker[] };

/** Worker to primary. */
export type ToPrimary =
  /** The worker's module is loaded and takes messages (cluster's 'online' comes before that). */
  | { mqtt: 'ready' }
  | { mqtt: 'attached' }
  | { mqtt: 'listening'; port: number }
  | { mqtt: 'failed'; error: string }
  /** `ack`: the publisher's acknowledgement waits for the other workers to store it (`stored`). */
  | { mqtt: 'publish'; tenantId: string; message: Message; ack?: number }
  | { mqtt: 'stored'; ack: number; ok: boolean }
  | { mqtt: 'claim'; claim: SessionClaim; requestId?: number }
  | { mqtt: 'release'; tenantId: string; clientId: string; claimId: number }
  | { mqtt: 'handed-over'; requestId: number; state?: SessionState }
  | { mqtt: 'drop-tenant'; tenantId: string }
  | { mqtt: 'shared'; tenantId: string; key: string; filter: string; present: boolean }
  /** This worker's interest in the tenant's messages; `requestId`: answer once every other worker knows. */
  | { mqtt: 'interest'; tenantId: string; level: Interest; requestId?: number }
  | { mqtt: 'interest-known'; ack: number }
  | { mqtt: 'stats'; stats: MqttListenerStats; requestId?: number }
  | { mqtt: 'metrics'; metrics: MetricsSnapshot; requestId: number }
  | { mqtt: 'batch'; messages: ToPrimary[] };

/**
 * Bus messages travel in batches: one IPC write per event loop turn, or per BATCH_MS for those
 * nobody waits for (claims without a hand-over, releases). Under a connection storm this turns two
 * writes per connection, each waking the other process, into a few per turn.
 */
const BATCH_MS = 10;

/**
 * The default number of workers: the CPUs this process may use (its CPU affinity, and a cgroup v2
 * CPU quota when one is set: a container limited to 2 CPUs on a 64-core host gets 2), or 1 when
 * certgate itself runs as a node:cluster worker of another program, which cannot fork its own.
 */
export function defaultWorkers(): number {
  if (!cluster.isPrimary) return 1;
  let n = os.availableParallelism();
  try {
    const [quota, period] = readFileSync('/sys/fs/cgroup/cpu.max', 'utf8').trim().split(/\s+/);
    if (quota && quota !== 'max' && Number(period) > 0) n = Math.min(n, Math.max(1, Math.ceil(Number(quota) / Number(period))));
  } catch {
    // no cgroup v2 CPU controller: affinity alone
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Primary

export interface MqttClusterOptions {
  workers: number;
  /**
   * Where retained messages and persistent sessions are stored: the primary loads them when it
   * starts (and a dead worker's sessions when it is gone); each worker writes its own changes.
   */
  durable?: Pick<DurableStore, 'loadRetained' | 'loadSessions' | 'sessionEnded'>;
  spec: Omit<WorkerSpec, 'handOverTimeoutMs'> & { handOverTimeoutMs?: number };
  logger: Logger;
}

export type WorkerStats = MqttListenerStats & { worker: number };

export interface MqttCluster extends MqttListener {
  /** Each live worker's statistics, asked for now, by worker id. */
  workerStats(): Promise<WorkerStats[]>;
  /** Each live worker's Prometheus metrics (its verifier's among them), asked for now. */
  workerMetrics(): Promise<MetricsSnapshot[]>;
}

interface Live {
  worker: Worker;
  /** Bus messages for this worker, sent at the end of the event loop turn. */
  outbox: ToWorker[];
  /** Attached to the bus: it gets messages and take-overs. */
  attached: boolean;
  stats?: MqttListenerStats;
  startedAt: number;
}

/** Counters keep counting across worker restarts; these two are levels, not counters. */
const LEVELS = new Set(['connections', 'sessions']);
const STATS_TIMEOUT_MS = 2_000;
const STOP_TIMEOUT_MS = 10_000;

function workerEntry(): { exec: string; execArgv: string[] } {
  // From sources (tsx), the worker entry is TypeScript too and needs the same loader.
  const fromSource = import.meta.url.endsWith('.ts');
  const exec = fileURLToPath(new URL(fromSource ? './mqtt-worker.ts' : './mqtt-worker.js', import.meta.url));
  return { exec, execArgv: fromSource ? ['--import', import.meta.resolve('tsx')] : [] };
}

export function createMqttCluster(options: MqttClusterOptions): MqttCluster {
  const log = options.logger.child({ component: 'mqtt-cluster' });
  const spec: WorkerSpec = { handOverTimeoutMs: 5_000, ...options.spec };
  const workers = new Map<number, Live>();
  /** A copy of every tenant's retained messages, for workers that start later. */
  const store = options.durable;
  const retained = new Broker({ ...DEFAULT_LIMITS, ...spec.limits?.limits });
  /**
   * Persistent sessions stored by an earlier run (or by a worker that died), by tenant and client
   * id, until a worker claims them.
   */
  const storedSessions = new Map<string, StoredSession>();
  /** The stored sessions no live worker holds, added to those waiting for their clients. */
  const loadSessions = async (): Promise<void> => {
    if (!store) return;
    for (const s of await store.loadSessions()) {
      const key = `${s.tenantId}\u0000${s.state.clientId}`;
      if (!directory.has(key)) storedSessions.set(key, s);
    }
    placeSessions();
  };
  /**
   * Stored sessions go to the attached workers in turn, which keep them (messages published
   * meanwhile are queued in them) until their clients come back, there or on another worker.
   */
  let placeTurn = 0;
  const placeSessions = (): void => {
    const attached = [...workers.values()].filter((w) => w.attached);
    if (attached.length === 0) return;
    const now = Date.now();
    for (const [key, s] of storedSessions) {
      storedSessions.delete(key);
      if (directory.has(key) || s.expiresAt <= now) continue;
      const live = attached[placeTurn++ % attached.length]!;
      directory.set(key, { worker: live.worker.id, claimId: 0 });
      send(live, { mqtt: 'adopt', tenantId: s.tenantId, state: { ...s.state, expiryMs: s.expiresAt - now } });
    }
  };
  /** Workers with members of each shared subscription, by tenant and `$share/...` filter. */
  const shared = new Map<string, { tenantId: string; key: string; filter: string; workers: Set<number> }>();
  const announceShared = (g: { tenantId: string; key: string; filter: string; workers: Set<number> }, only?: Live): void => {
    const m: ToWorker = { mqtt: 'shared', tenantId: g.tenantId, key: g.key, filter: g.filter, workers: [...g.workers] };
    if (only) send(only, m);
    else for (const w of workers.values()) if (w.attached) send(w, m);
  };
  /** Tenants whose deletion was just relayed: the other workers' reports of it are not relayed again. */
  const droppedTenants = new Set<string>();
  const directory = new Map<string, { worker: number; claimId: number }>();
  /** Hand-overs asked of one worker for another, by the primary's request id. */
  const handOvers = new Map<number, { from: number; to: number; requestId: number }>();
  /**
   * Publications whose acknowledgement waits until every other worker stored what they changed,
   * by the primary's request id: the publishing worker, its id for it, the workers yet to answer.
   */
  const storing = new Map<number, { origin: Live; ack: number; left: Set<number>; ok: boolean }>();
  const storedBy = (requestId: number, workerId: number, ok: boolean): void => {
    const s = storing.get(requestId);
    if (!s || !s.left.delete(workerId)) return;
    s.ok &&= ok;
    if (s.left.size > 0) return;
    storing.delete(requestId);
    send(s.origin, { mqtt: 'stored', ack: s.ack, ok: s.ok });
  };
  /** Each worker's interest in each tenant's messages (absent: none), by tenant, then by worker. */
  const interest = new Map<string, Map<number, Interest>>();
  const interestOf = (tenantId: string, workerId: number): Interest => interest.get(tenantId)?.get(workerId) ?? 0;
  /** Rises of a worker's interest waiting for the other workers to know them, by the primary's request id. */
  const announcing = new Map<number, { origin: Live; requestId: number; left: Set<number> }>();
  const knownBy = (ack: number, workerId: number): void => {
    const a = announcing.get(ack);
    if (!a || !a.left.delete(workerId) || a.left.size > 0) return;
    announcing.delete(ack);
    send(a.origin, { mqtt: 'interest-known', requestId: a.requestId });
  };
  /** Sets a worker's interest and tells the other workers; `requestId`: answers the worker once they know. */
  const setInterest = (live: Live, tenantId: string, level: Interest, requestId?: number): void => {
    const id = live.worker.id;
    let byWorker = interest.get(tenantId);
    if (level > 0) {
      if (!byWorker) interest.set(tenantId, (byWorker = new Map()));
      byWorker.set(id, level);
    } else if (byWorker) {
      byWorker.delete(id);
      if (byWorker.size === 0) interest.delete(tenantId);
    }
    const others = [...workers.values()].filter((w) => w !== live && w.attached);
    let ack: number | undefined;
    if (requestId !== undefined) {
      if (others.length === 0) send(live, { mqtt: 'interest-known', requestId });
      else announcing.set((ack = ++lastRequestId), { origin: live, requestId, left: new Set(others.map((w) => w.worker.id)) });
    }
    for (const w of others) send(w, { mqtt: 'interest', tenantId, worker: id, level, ...(ack !== undefined ? { ack } : {}) });
  };
  /** Answers awaited from workers (statistics, metrics), by request id. */
  const requests = new Map<number, (answer: MqttListenerStats | MetricsSnapshot) => void>();
  let lastRequestId = 0;
  let stopping = false;
  let restartDelayMs = 1_000;
  let restartTimer: NodeJS.Timeout | undefined;
  const retired: Record<string, number> = {};

  const write = (live: Live, m: ToWorker): void => {
    if (live.worker.isConnected()) live.worker.send(m, undefined, () => {});
  };
  let flushing: NodeJS.Immediate | undefined;
  const flush = (): void => {
    flushing = undefined;
    for (const live of workers.values()) {
      if (live.outbox.length === 0) continue;
      const messages = live.outbox;
      live.outbox = [];
      write(live, messages.length === 1 ? messages[0]! : { mqtt: 'batch', messages });
    }
  };
  /** Bus messages go out together at the end of this turn, in order; control messages at once. */
  const send = (live: Live | undefined, m: ToWorker): void => {
    if (!live) return;
    live.outbox.push(m);
    flushing ??= setImmediate(flush);
  };
  const control = (live: Live, m: ToWorker): void => {
    flush();
    write(live, m);
  };

  const onMessage = (live: Live, m: ToPrimary): void => {
    switch (m.mqtt) {
      case 'attached':
        live.attached = true;
        retained.forEachRetained((tenantId, message) => send(live, { mqtt: 'retain', tenantId, message }));
        for (const g of shared.values()) announceShared(g, live);
        for (const [tenantId, byWorker] of interest) {
          for (const [worker, level] of byWorker) if (worker !== live.worker.id) send(live, { mqtt: 'interest', tenantId, worker, level });
        }
        send(live, { mqtt: 'snapshot-done' });
        placeSessions();
        return;
      case 'publish': {
        if (m.message.retain) retained.space(m.tenantId).retain(m.message);
        // Routed by the workers with a subscription in the tenant; the others only keep it if retained.
        const routing = [...workers.values()].filter((w) => w !== live && w.attached && interestOf(m.tenantId, w.worker.id) > 0);
        let requestId: number | undefined;
        if (m.ack !== undefined) {
          if (routing.length === 0) send(live, { mqtt: 'stored', ack: m.ack, ok: true });
          else storing.set((requestId = ++lastRequestId), { origin: live, ack: m.ack, left: new Set(routing.map((w) => w.worker.id)), ok: true });
        }
        for (const other of workers.values()) {
          if (other === live) {
            if (m.message.retain) send(live, { mqtt: 'retain', tenantId: m.tenantId, message: m.message });
          } else if (routing.includes(other)) {
            send(other, { mqtt: 'publish', tenantId: m.tenantId, message: m.message, ...(requestId !== undefined ? { ack: requestId } : {}) });
          } else if (other.attached && m.message.retain) {
            send(other, { mqtt: 'retain', tenantId: m.tenantId, message: m.message });
          }
        }
        return;
      }
      case 'stored':
        storedBy(m.ack, live.worker.id, m.ok);
        return;
      case 'interest':
        setInterest(live, m.tenantId, m.level, m.requestId);
        return;
      case 'interest-known':
        knownBy(m.ack, live.worker.id);
        return;
      case 'claim': {
        const { claim } = m;
        const key = `${claim.tenantId}\u0000${claim.clientId}`;
        const previous = directory.get(key);
        directory.set(key, { worker: live.worker.id, claimId: claim.claimId });
        const holder = previous && previous.worker !== live.worker.id ? workers.get(previous.worker) : undefined;
        const stored = storedSessions.get(key);
        storedSessions.delete(key); // claimed: resumed now, or replaced by a clean start
        if (!holder?.attached && stored && claim.handOver && m.requestId !== undefined && stored.expiresAt > Date.now()) {
          const state = { ...stored.state, expiryMs: stored.expiresAt - Date.now() };
          send(live, { mqtt: 'handed-over', requestId: m.requestId, state });
          return;
        }
        // Not taken back: its row goes (unless a newer session wrote over it meanwhile).
        if (stored) store?.sessionEnded(stored.tenantId, stored.state.clientId, stored.state.holder ?? '');
        if (holder?.attached) {
          let requestId: number | undefined;
          if (claim.handOver && m.requestId !== undefined) {
            requestId = ++lastRequestId;
            handOvers.set(requestId, { from: holder.worker.id, to: live.worker.id, requestId: m.requestId });
          }
          send(holder, { mqtt: 'take-over', claim: { ...claim, claimId: previous!.claimId }, ...(requestId ? { requestId } : {}) });
        } else if (m.requestId !== undefined) {
          send(live, { mqtt: 'handed-over', requestId: m.requestId });
        }
        return;
      }
      case 'handed-over': {
        const h = handOvers.get(m.requestId);
        if (!h) return;
        handOvers.delete(m.requestId);
        send(workers.get(h.to), { mqtt: 'handed-over', requestId: h.requestId, ...(m.state ? { state: m.state } : {}) });
        return;
      }
      case 'release': {
        const key = `${m.tenantId}\u0000${m.clientId}`;
        const held = directory.get(key);
        if (held && held.worker === live.worker.id && held.claimId === m.claimId) directory.delete(key);
        return;
      }
      case 'shared': {
        const key = `${m.tenantId}\u0000${m.key}`;
        let g = shared.get(key);
        if (!g) shared.set(key, (g = { tenantId: m.tenantId, key: m.key, filter: m.filter, workers: new Set() }));
        if (m.present) g.workers.add(live.worker.id);
        else g.workers.delete(live.worker.id);
        if (g.workers.size === 0) shared.delete(key);
        announceShared(g);
        return;
      }
      case 'drop-tenant': {
        // Every worker reports the same deletion; the first report does the work.
        for (const [key, s] of storedSessions) if (s.tenantId === m.tenantId) storedSessions.delete(key);
        if (!retained.dropTenant(m.tenantId) && droppedTenants.has(m.tenantId)) return;
        droppedTenants.add(m.tenantId);
        setTimeout(() => droppedTenants.delete(m.tenantId), 10_000).unref();
        for (const w of workers.values()) if (w.attached) send(w, { mqtt: 'drop-tenant', tenantId: m.tenantId });
        return;
      }
      case 'stats':
        live.stats = m.stats;
        if (m.requestId !== undefined) requests.get(m.requestId)?.(m.stats);
        return;
      case 'metrics':
        requests.get(m.requestId)?.(m.metrics);
        return;
      default:
        return;
    }
  };

  /** A worker is gone: its sessions are nobody's, and hand-overs it owed are answered empty. */
  const forget = (live: Live): void => {
    const id = live.worker.id;
    for (const [key, held] of directory) if (held.worker === id) directory.delete(key);
    // A worker gone before it stored a message cannot vouch for it; one that published it needs no answer.
    for (const [requestId, s] of storing) {
      if (s.origin === live) storing.delete(requestId);
      else storedBy(requestId, id, false);
    }
    // Its interest is gone with it; rises it was to confirm are known to every worker left.
    for (const [tenantId, byWorker] of interest) if (byWorker.has(id)) setInterest(live, tenantId, 0);
    for (const [ack, a] of announcing) {
      if (a.origin === live) announcing.delete(ack);
      else knownBy(ack, id);
    }
    for (const [requestId, h] of handOvers) {
      if (h.from === id) send(workers.get(h.to), { mqtt: 'handed-over', requestId: h.requestId });
      if (h.from === id || h.to === id) handOvers.delete(requestId);
    }
    for (const [k, v] of Object.entries(live.stats ?? {})) {
      if (!LEVELS.has(k) && typeof v === 'number') retired[k] = (retired[k] ?? 0) + v;
    }
    workers.delete(id);
    // Its shared subscription members are gone with it.
    for (const [key, g] of shared) {
      if (!g.workers.delete(id)) continue;
      if (g.workers.size === 0) shared.delete(key);
      announceShared(g);
    }
  };

  /** Starts one worker; resolves with its port once it listens. */
  const fork = (): Promise<number> => {
    const worker = cluster.fork();
    const live: Live = { worker, outbox: [], attached: false, startedAt: Date.now() };
    workers.set(worker.id, live);
    return new Promise<number>((resolve, reject) => {
      let listening = false;
      worker.on('message', (m: ToPrimary) => {
        if (m?.mqtt === 'batch') {
          for (const one of m.messages) onMessage(live, one);
        } else if (m?.mqtt === 'ready') {
          // Every worker asks for the configured port, 0 included: node:cluster hands them all the
          // socket it made for the first request of that address and port.
          control(live, { mqtt: 'start', spec });
        } else if (m?.mqtt === 'listening') {
          listening = true;
          resolve(m.port);
        } else if (m?.mqtt === 'failed') {
          reject(new Error(`MQTT worker ${worker.id} could not start: ${m.error}`));
        } else if (m?.mqtt) {
          onMessage(live, m);
        }
      });
      worker.once('exit', (code, signal) => {
        forget(live);
        if (!listening) reject(new Error(`MQTT worker ${worker.id} exited (${signal ?? code}) before it listened`));
        if (stopping || !listening) return;
        log.error({ worker: worker.id, code, signal }, 'MQTT worker exited; starting another');
        // Its persistent sessions are in the database: they wait for their clients here.
        loadSessions().catch((err: Error) => log.warn({ err: err.message }, 'stored MQTT sessions of the worker not loaded'));
        // A worker that keeps dying right after it started is restarted less and less often.
        restartDelayMs = Date.now() - live.startedAt > 60_000 ? 1_000 : Math.min(restartDelayMs * 2, 30_000);
        restartTimer = setTimeout(() => {
          restartTimer = undefined;
          if (!stopping) fork().catch((err: Error) => log.error({ err: err.message }, 'MQTT worker did not start'));
        }, restartDelayMs);
        restartTimer.unref();
      });
    });
  };

  /** Counters of live and retired workers, levels of live ones. */
  const sum = (): MqttListenerStats => {
    const out: Record<string, number> = { ...retired };
    for (const w of workers.values()) {
      for (const [k, v] of Object.entries(w.stats ?? {})) if (typeof v === 'number') out[k] = (out[k] ?? 0) + v;
    }
    return out as unknown as MqttListenerStats;
  };

  const stopWorker = (live: Live): Promise<void> =>
    new Promise((resolve) => {
      if (live.worker.isDead()) return resolve();
      const timer = setTimeout(() => live.worker.process.kill('SIGKILL'), STOP_TIMEOUT_MS);
      live.worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      control(live, { mqtt: 'stop' });
    });

  /** Asks every attached worker; those that do not answer in time are left out. */
  const ask = async (question: (requestId: number) => ToWorker): Promise<Array<[number, MqttListenerStats | MetricsSnapshot]>> => {
    const asks = [...workers.values()]
      .filter((w) => w.attached)
      .map(
        (w) =>
          new Promise<[number, MqttListenerStats | MetricsSnapshot] | undefined>((resolve) => {
            const requestId = ++lastRequestId;
            const timer = setTimeout(() => {
              requests.delete(requestId);
              resolve(undefined);
            }, STATS_TIMEOUT_MS);
            requests.set(requestId, (answer) => {
              clearTimeout(timer);
              requests.delete(requestId);
              resolve([w.worker.id, answer]);
            });
            control(w, question(requestId));
          }),
      );
    return (await Promise.all(asks)).filter((a) => a !== undefined);
  };

  let closed = false;
  let port = spec.port;
  return {
    get stats() {
      return sum();
    },

    async listen() {
      if (!cluster.isPrimary) throw new Error('MQTT_WORKERS above 1 needs certgate as the main process, not as a node:cluster worker');
      // Workers accept from the shared socket themselves unless the environment chose otherwise.
      if (!process.env.NODE_CLUSTER_SCHED_POLICY) cluster.schedulingPolicy = cluster.SCHED_NONE;
      cluster.setupPrimary({ ...workerEntry(), serialization: 'advanced' });
      if (store) {
        // The retained messages of before the restart: every worker gets them before it listens.
        for (const { tenantId, message } of await store.loadRetained()) retained.space(tenantId).retained.set(message.topic, message);
      }
      await loadSessions();
      try {
        const ports = await Promise.all(Array.from({ length: options.workers }, () => fork()));
        port = ports[0]!;
      } catch (err) {
        await this.close();
        throw err;
      }
      log.info({ workers: options.workers, port }, 'MQTT listener running in worker processes');
      return { port };
    },

    async workerStats() {
      const answers = await ask((requestId) => ({ mqtt: 'stats?', requestId }));
      return answers.map(([w, s]) => ({ ...(s as MqttListenerStats), worker: w }));
    },

    async workerMetrics() {
      return (await ask((requestId) => ({ mqtt: 'metrics?', requestId }))).map(([, m]) => m as MetricsSnapshot);
    },

    async close() {
      if (closed) return;
      closed = true;
      stopping = true;
      clearTimeout(restartTimer);
      // The workers write their sessions' last changes as they stop; the rows stay for the next start.
      await Promise.all([...workers.values()].map(stopWorker));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Worker side

/** The bus of a worker process: the listener's link to the primary over IPC. */
export function workerBus(handOverTimeoutMs: number): ListenerBus & { snapshotDone: Promise<void>; flush(): Promise<void> } {
  let handlers: ListenerBusHandlers | undefined;
  let lastRequestId = 0;
  const waiting = new Map<number, (state: SessionState | undefined) => void>();
  /** Publications waiting for the other workers to store them, by request id. */
  const acks = new Map<number, (ok: boolean) => void>();
  /** Rises of interest waiting for the other workers to know them, by request id. */
  const known = new Map<number, () => void>();
  let snapshotDone!: () => void;
  const snapshot = new Promise<void>((resolve) => (snapshotDone = resolve));

  let outbox: ToPrimary[] = [];
  let soon: NodeJS.Immediate | undefined;
  let later: NodeJS.Timeout | undefined;
  /** Sends what waits; resolves once it is handed to the IPC channel (a worker exiting waits for that). */
  const flush = (): Promise<void> => {
    clearImmediate(soon);
    clearTimeout(later);
    soon = later = undefined;
    if (outbox.length === 0 || !process.connected) return Promise.resolve();
    const messages = outbox;
    outbox = [];
    return new Promise((resolve) => {
      process.send!(messages.length === 1 ? messages[0] : { mqtt: 'batch', messages }, undefined, undefined, () => resolve());
    });
  };
  /** `urgent`: someone waits for it (a hand-over) or it carries a message; else within BATCH_MS. */
  const send = (m: ToPrimary, urgent = true): void => {
    outbox.push(m);
    if (urgent) soon ??= setImmediate(flush);
    else if (!soon && !later) {
      later = setTimeout(flush, BATCH_MS);
      later.unref();
    }
  };

  const dispatch = (m: ToWorker): void => {
    switch (m.mqtt) {
      case 'batch':
        for (const one of m.messages) dispatch(one);
        return;
      case 'publish': {
        const stored = handlers?.publish(m.tenantId, m.message);
        if (m.ack === undefined) return;
        const ack = m.ack;
        if (!stored) send({ mqtt: 'stored', ack, ok: true });
        else void stored.then((ok) => send({ mqtt: 'stored', ack, ok }));
        return;
      }
      case 'stored':
        acks.get(m.ack)?.(m.ok);
        return;
      case 'retain':
        handlers?.retain(m.tenantId, m.message);
        return;
      case 'take-over': {
        const state = handlers?.takeOver(m.claim);
        if (m.requestId !== undefined) send({ mqtt: 'handed-over', requestId: m.requestId, ...(state ? { state } : {}) });
        return;
      }
      case 'handed-over':
        waiting.get(m.requestId)?.(m.state);
        return;
      case 'adopt':
        handlers?.adopt(m.tenantId, m.state);
        return;
      case 'snapshot-done':
        snapshotDone();
        return;
      case 'drop-tenant':
        handlers?.dropTenant(m.tenantId);
        return;
      case 'shared':
        handlers?.sharedProcesses(m.tenantId, m.key, m.filter, m.workers);
        return;
      case 'interest':
        handlers?.interest(m.tenantId, m.worker, m.level);
        if (m.ack !== undefined) send({ mqtt: 'interest-known', ack: m.ack });
        return;
      case 'interest-known':
        known.get(m.requestId)?.();
        return;
      default:
        return;
    }
  };
  process.on('message', (m: ToWorker) => {
    if (m?.mqtt) dispatch(m);
  });

  return {
    snapshotDone: snapshot,
    flush,
    publish(tenantId, message, stored) {
      if (!stored) {
        send({ mqtt: 'publish', tenantId, message });
        return undefined;
      }
      const ack = ++lastRequestId;
      return new Promise<boolean>((resolve) => {
        // Without an answer in time the message counts as not stored.
        const timer = setTimeout(() => done(false), handOverTimeoutMs);
        const done = (ok: boolean) => {
          clearTimeout(timer);
          acks.delete(ack);
          resolve(ok);
        };
        acks.set(ack, done);
        send({ mqtt: 'publish', tenantId, message, ack });
      });
    },
    claim(claim) {
      if (!claim.handOver) {
        send({ mqtt: 'claim', claim }, false);
        return Promise.resolve(undefined);
      }
      const requestId = ++lastRequestId;
      return new Promise<SessionState | undefined>((resolve) => {
        // Without an answer in time the client gets a fresh session (CONNACK session present 0).
        const timer = setTimeout(() => done(undefined), handOverTimeoutMs);
        const done = (state: SessionState | undefined) => {
          clearTimeout(timer);
          waiting.delete(requestId);
          resolve(state);
        };
        waiting.set(requestId, done);
        send({ mqtt: 'claim', claim, requestId });
      });
    },
    release(tenantId, clientId, claimId) {
      send({ mqtt: 'release', tenantId, clientId, claimId }, false);
    },
    dropTenant(tenantId) {
      send({ mqtt: 'drop-tenant', tenantId });
    },
    self: cluster.worker?.id ?? 0,
    sharedGroup(tenantId, key, filter, present) {
      send({ mqtt: 'shared', tenantId, key, filter, present });
    },
    interest(tenantId, level, confirm) {
      if (!confirm) {
        // Less interest: the other workers may send what nobody here wants meanwhile.
        send({ mqtt: 'interest', tenantId, level }, false);
        return undefined;
      }
      const requestId = ++lastRequestId;
      return new Promise<void>((resolve) => {
        // Without an answer in time the SUBACK goes out all the same.
        const timer = setTimeout(() => done(), handOverTimeoutMs);
        const done = () => {
          clearTimeout(timer);
          known.delete(requestId);
          resolve();
        };
        known.set(requestId, done);
        send({ mqtt: 'interest', tenantId, level, requestId });
      });
    },
    receive(h) {
      handlers = h;
      send({ mqtt: 'attached' });
      return () => {
        handlers = undefined;
      };
    },
  };
}
