/**
 * The mTLS MQTT listener: TLS that asks every client for a certificate but
 * accepts any (so a refusal can be a proper CONNACK instead of a TLS alert), the verifier's
 * decision on CONNECT, per-tenant message routing with the device's ACL, and the session kill
 * switch fed by SessionChange events.
 *
 * Why not aedes: aedes 1.2 refuses MQTT 5 at CONNECT (protocol levels 3 and 4 only) and keys
 * sessions and takeover by client id across the whole broker, so two tenants' `dev1` would
 * disconnect each other. The broker here is small, built on mqtt-packet (aedes' own codec), and
 * keeps each tenant in its own space (see broker.ts).
 */
import { constants as cryptoConstants } from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { IConnectPacket } from 'mqtt-packet';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import {
  VerifierUnavailableError,
  type AllowDecision,
  type AuthenticateRequest,
  type Decision,
  type SessionChange,
  type Verifier,
} from '../verifier/verifier-types.js';
import { Broker, DEFAULT_LIMITS, type BrokerLimits, type DropReason, type Interest, type Message, type Session, type SessionState } from './broker.js';
import { MqttConnection, RC5, type AuthOutcome, type ConnectionStats, type LimitName } from './mqtt-connection.js';
import { peerChain, sha1Fingerprint, type PeerChain } from './peer-chain.js';
import { createBurstLogger } from '../lib/logger.js';
import type { DurableStore, Durability } from './durable-store.js';
import { SessionIndex, type SessionKeys } from './session-index.js';

export interface SessionChangeSource {
  subscribe(fn: (change: SessionChange) => void): () => void;
  /** Changes were missed (the change feed was down): every live session is decided again. */
  onMissed?(fn: () => void): () => void;
}

/** Tenants deleted (their broker state must go: a tenant made again with the same id starts empty). */
export interface TenantDeletionSource {
  subscribe(fn: (tenantId: string) => void): () => void;
  /**
   * Which of these tenants exist now (one query for all). After changes were missed, the tenants
   * the listener keeps state for and that no longer exist are dropped as on their deletion.
   */
  existing?(tenantIds: string[]): Promise<Set<string>>;
}

/** Counters the listener feeds (Prometheus in certgate; see plugins/metrics.ts). */
export interface MqttMetricsSink {
  /** A publication or will refused; `reason` is `acl`. */
  publishDenied(tenantId: string, reason: string): void;
  limitHit(limit: LimitName): void;
  messageDropped(tenantId: string, reason: DropReason): void;
}

export interface ConnectionRecorderSink {
  connected(tenantId: string, deviceId: string, at: Date): void;
}

/** A listener's hold on the session of one client id within one tenant (MQTT 3.1.4-2). */
export interface SessionClaim {
  tenantId: string;
  clientId: string;
  /** The device connecting now. */
  deviceId: string;
  /** Increasing per listener process: a later claim of the same process replaces an earlier one. */
  claimId: number;
  /** The client resumes its session (clean start 0): a process holding it hands its state over. */
  handOver: boolean;
}

/**
 * The other listener processes sharing the port (MQTT_WORKERS > 1, mqtt-cluster.ts). Without
 * one, a listener is alone: its tenants' messages and sessions live in this process only.
 */
export interface ListenerBus {
  /**
   * A message a client of this process published, for the same tenant's sessions elsewhere.
   * `stored`: resolves once the other processes stored what it changed in their stored sessions
   * (false if one could not).
   */
  publish(tenantId: string, message: Message, stored?: boolean): Promise<boolean> | undefined;
  /**
   * This process takes the session; whichever process held it ends it (or, with `handOver`, hands
   * its state over: the promise resolves with it, or with undefined when there is none).
   */
  claim(claim: SessionClaim): Promise<SessionState | undefined>;
  /** The session of a claim ended here. */
  release(tenantId: string, clientId: string, claimId: number): void;
  /** A tenant was deleted: every process (and the copy of retained messages for new ones) forgets it. */
  dropTenant(tenantId: string): void;
  /** This process's id among the listener processes. */
  readonly self: number;
  /** A shared subscription got its first member in this process, or lost its last. */
  sharedGroup(tenantId: string, key: string, filter: string, present: boolean): void;
  /**
   * This process's interest in a tenant's messages changed (broker.ts, `Interest`); `confirm`:
   * resolves once every other process knows it (a message published there after that is sent here).
   */
  interest(tenantId: string, level: Interest, confirm: boolean): Promise<void> | undefined;
  /** Where the listener takes what the other processes send; returns the way to stop. */
  receive(handlers: ListenerBusHandlers): () => void;
}

export interface ListenerBusHandlers {
  /**
   * A message published on another process, for this process's sessions of the tenant; answers,
   * when it changed stored sessions, when that is stored.
   */
  publish(tenantId: string, message: Message): Promise<boolean> | undefined;
  /** A retained message to store without routing it (the order every process agrees on). */
  retain(tenantId: string, message: Message): void;
  /**
   * Another process claimed a session this process claimed as `claim.claimId`; `claim` carries
   * the new holder's device and whether it asks for the state.
   */
  takeOver(claim: SessionClaim): SessionState | undefined;
  /**
   * A stored session (of an earlier run, or of a process that died) for this process to keep
   * until its client comes back, held as claim 0.
   */
  adopt(tenantId: string, state: SessionState): void;
  /** A tenant was deleted. */
  dropTenant(tenantId: string): void;
  /** The processes that have members of a shared subscription now. */
  sharedProcesses(tenantId: string, key: string, filter: string, processes: number[]): void;
  /** Another process's interest in a tenant's messages. */
  interest(tenantId: string, process: number, level: Interest): void;
}

export interface MqttListenerOptions {
  verifier: Verifier;
  /** Default `0.0.0.0`. */
  host?: string;
  /** 0 picks a free port (see `listen()`'s result). */
  port: number;
  tls: {
    /** Server certificate PEM (may already hold its chain). */
    cert: string | Buffer;
    key: string | Buffer;
    /**
     * Certificates sent after the server certificate (its issuing chain). Never used to judge
     * client certificates: a `ca` for that would be announced in the CertificateRequest, and
     * clients that pick a key by those names (Java key managers, MQTT.fx) would then send none.
     */
    ca?: string | Buffer;
  };
  logger: Logger;
  sessionChanges?: SessionChangeSource;
  connectionRecorder?: ConnectionRecorderSink;
  /** A client that has not completed CONNECT by then is cut off. Default 10 s. */
  connectTimeoutMs?: number;
  /** A TLS handshake that has not completed by then is cut off. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** A verifier that has not answered by then counts as unavailable. Default 10 s. */
  authenticateTimeoutMs?: number;
  /** Largest MQTT packet accepted. Default 1 MiB (EMQX's default; mosquitto allows 256 MB). */
  maxPacketSize?: number;
  /**
   * Accepted connections at once in this process; a CONNECT beyond it is refused (MQTT 5: 0x97
   * quota exceeded; 3.1.1: 3 server unavailable), and TCP connections beyond twice it are not
   * accepted at all. Default unlimited.
   */
  maxConnections?: number;
  /** Accepted connections at once per tenant in this process, refused as above. Default unlimited. */
  maxConnectionsPerTenant?: number;
  /** QoS 2 messages from one client awaiting PUBREL at once. Default 100. */
  receiveMaximum?: number;
  /** QoS 1 and 2 messages in flight to one client (mosquitto's max_inflight_messages). Default 20. */
  maxInflight?: number;
  /** Topic aliases a client may set. Default 10 (mosquitto's max_topic_alias). */
  topicAliasMaximum?: number;
  /** Longest keep alive granted, announced as Server Keep Alive. Default 0: whatever the client asks. */
  maxKeepAliveSeconds?: number;
  /** Subscriptions per session. Default 0: unlimited. */
  maxSubscriptionsPerClient?: number;
  /** PUBLISH packets per second per connection. Default 0: unlimited. */
  publishRatePerSecond?: number;
  tenantDeletions?: TenantDeletionSource;
  metrics?: MqttMetricsSink;
  /**
   * Where persistent sessions and retained messages are written as they change, so they survive
   * the process (durable-store.ts). Alone, the listener loads them when it starts; with a bus, the
   * primary loads them and hands them out, and this process writes its own clients' changes.
   */
  durable?: DurableStore;
  /** Longest a detached persistent session is kept. Default one day. */
  maxSessionExpirySeconds?: number;
  /** QoS 0 messages to a client are dropped while this much is unsent. Default 8 MiB. */
  maxOutboundBufferBytes?: number;
  limits?: Partial<BrokerLimits>;
  /** The other processes of a multi-process listener. */
  bus?: ListenerBus;
}

/** The limits a listener takes from configuration; plain data, so a primary can send it to workers. */
export type ListenerLimits = Pick<
  MqttListenerOptions,
  | 'maxConnections'
  | 'maxConnectionsPerTenant'
  | 'maxPacketSize'
  | 'receiveMaximum'
  | 'maxInflight'
  | 'topicAliasMaximum'
  | 'maxKeepAliveSeconds'
  | 'maxSubscriptionsPerClient'
  | 'publishRatePerSecond'
  | 'maxSessionExpirySeconds'
  | 'limits'
>;

/** The MQTT_* limit settings as listener options. */
export function listenerLimits(config: Config): ListenerLimits {
  return {
    ...(config.MQTT_MAX_CONNECTIONS > 0 ? { maxConnections: config.MQTT_MAX_CONNECTIONS } : {}),
    ...(config.MQTT_MAX_CONNECTIONS_PER_TENANT > 0 ? { maxConnectionsPerTenant: config.MQTT_MAX_CONNECTIONS_PER_TENANT } : {}),
    maxPacketSize: config.MQTT_MAX_PACKET_SIZE,
    receiveMaximum: config.MQTT_RECEIVE_MAXIMUM,
    maxInflight: config.MQTT_MAX_INFLIGHT,
    topicAliasMaximum: config.MQTT_TOPIC_ALIAS_MAXIMUM,
    maxKeepAliveSeconds: config.MQTT_MAX_KEEPALIVE,
    maxSubscriptionsPerClient: config.MQTT_MAX_SUBSCRIPTIONS,
    publishRatePerSecond: config.MQTT_PUBLISH_RATE,
    maxSessionExpirySeconds: config.MQTT_MAX_SESSION_EXPIRY,
    limits: { maxQueuedPerSession: config.MQTT_MAX_QUEUED, maxRetainedPerTenant: config.MQTT_MAX_RETAINED_PER_TENANT },
  };
}

export interface MqttListenerStats extends ConnectionStats {
  /** Open MQTT connections (TLS done), authenticated or not. */
  connections: number;
  /** Sessions accepted and live. */
  sessions: number;
  accepted: number;
  notAuthorized: number;
  serverUnavailable: number;
  tlsErrors: number;
  sessionsKilled: number;
  messagesRouted: number;
  messagesDropped: number;
  tenantsDropped: number;
}

export interface MqttListener {
  listen(): Promise<{ port: number }>;
  close(): Promise<void>;
  readonly stats: MqttListenerStats;
}

interface Attachment {
  keys: SessionKeys;
  decision: AllowDecision;
  /** What the verifier was asked, to ask again when changes were missed. */
  request: AuthenticateRequest;
  /** The session claim made for this CONNECT, with a bus. */
  claim?: { key: string; tenantId: string; clientId: string; claimId: number };
}

/** A process's latest claim on a (tenant, client id): held, or made by a CONNECT still under way. */
interface HeldClaim {
  claimId: number;
  connecting?: MqttConnection;
}

/** Denied publications of one device are logged at most this often. */
const DENIED_LOG_MS = 10_000;

/** Live sessions decided again at once after missed changes. */
const RECHECK_PARALLEL = 256;

/** Changes remembered to catch those that arrive while a CONNECT is being decided. */
const RECENT_CHANGES = 1_024;

export function createMqttListener(options: MqttListenerOptions): MqttListener {
  const log = options.logger.child({ component: 'mqtt' });
  // A verifier outage refuses every CONNECT alike: one line per burst.
  const unavailable = createBurstLogger(log);
  const handshakes = createBurstLogger(log);
  const bus = options.bus;
  /** With a bus: this process's claims by tenant and client id. */
  const claims = new Map<string, HeldClaim>();
  const claimKey = (tenantId: string, clientId: string) => `${tenantId}\u0000${clientId}`;
  let lastClaimId = 0;
  const durable = options.durable;
  /** Publications of this process waiting for other processes to store them. */
  const elsewhere = {
    changes: 0,
    pending: new Set<Promise<boolean>>(),
    track(p: Promise<boolean>): void {
      this.changes++;
      this.pending.add(p);
      void p.finally(() => this.pending.delete(p));
    },
  };
  /**
   * What connections wait on before acknowledging: this process's store and, with other
   * processes, their storing of the messages published here.
   */
  const durability: Durability | undefined = (durable || bus) && {
    get changes() {
      return (durable?.changes ?? 0) + elsewhere.changes;
    },
    committed() {
      const own = durable ? durable.committed() : Promise.resolve(true);
      if (elsewhere.pending.size === 0) return own;
      return Promise.all([own, ...elsewhere.pending]).then((all) => all.every(Boolean));
    },
  };
  /**
   * With other processes: their interest in each tenant's messages (by tenant, the highest of
   * them and each process's), and what this process told them of its own. A message goes to the
   * other processes only when one of them has a subscription in its tenant (a retained message
   * always: every process keeps them), and its publisher's acknowledgement waits for them only
   * when one of them has a stored session subscribing there.
   */
  const remote = new Map<string, { max: Interest; by: Map<number, Interest> }>();
  const told = new Map<string, Interest>();
  /** Rises of this process's interest not yet known to every other process, by tenant. */
  const rising = new Map<string, Promise<void>>();
  const tellInterest = (tenantId: string, level: Interest): void => {
    const before = told.get(tenantId) ?? 0;
    if (level === before) return;
    if (level === 0) told.delete(tenantId);
    else told.set(tenantId, level);
    const known = bus!.interest(tenantId, level, level > before);
    if (!known) return;
    // A SUBACK (or the CONNACK of a session taken over from another process) waits for it.
    elsewhere.track(known.then(() => true));
    rising.set(tenantId, known);
    void known.then(() => {
      if (rising.get(tenantId) === known) rising.delete(tenantId);
    });
  };
  /** Off at shutdown: the sessions a closing broker ends are kept. */
  let storing = true;
  const durableEvents = durable
    ? {
        retained: (tenantId: string, topic: string, message: Message | undefined, expired?: boolean) => durable.retained(tenantId, topic, message, expired),
        sessionChanged: (session: Session) => durable.sessionChanged(session),
        sessionDeleted: (session: Session) => {
          if (storing) durable.sessionEnded(session.space.tenantId, session.clientId, session.holder);
        },
      }
    : {};
  const broker = new Broker(
    { ...DEFAULT_LIMITS, ...options.limits },
    bus
      ? {
          published: (tenantId, message) => {
            const wanted = remote.get(tenantId)?.max ?? 0;
            if (wanted === 0 && !message.retain) return;
            // A QoS 1 or 2 publisher's acknowledgement waits for the other processes' stored
            // sessions too (see `durability`).
            const stored = bus.publish(tenantId, message, durable !== undefined && message.qos > 0 && wanted === 2);
            if (stored) elsewhere.track(stored);
          },
          interest: tellInterest,
          sessionEnded: (session) => {
            const key = claimKey(session.space.tenantId, session.clientId);
            const held = claims.get(key);
            // A CONNECT of this process replacing the session keeps the claim for its own.
            if (!held || held.connecting) return;
            claims.delete(key);
            bus.release(session.space.tenantId, session.clientId, held.claimId);
          },
          dropped: (tenantId, reason) => options.metrics?.messageDropped(tenantId, reason),
          sharedGroup: (tenantId, key, filter, present) => bus.sharedGroup(tenantId, key, filter, present),
          ...durableEvents,
        }
      : {
          dropped: (tenantId, reason) => options.metrics?.messageDropped(tenantId, reason),
          ...durableEvents,
        },
    bus ? { self: bus.self, groups: new Map() } : undefined,
  );
  const index = new SessionIndex<MqttConnection>();
  const connections = new Set<MqttConnection>();
  const sockets = new Set<Socket>();
  const authenticateTimeoutMs = options.authenticateTimeoutMs ?? 10_000;

  const counters = {
    protocolErrors: 0,
    connectTimeouts: 0,
    keepaliveTimeouts: 0,
    publishReceived: 0,
    publishDenied: 0,
    publishSent: 0,
    subscribeDenied: 0,
    accepted: 0,
    notAuthorized: 0,
    serverUnavailable: 0,
    tlsErrors: 0,
    sessionsKilled: 0,
    tenantsDropped: 0,
  };
  const stats: MqttListenerStats = Object.defineProperties(counters as MqttListenerStats, {
    connections: { get: () => connections.size, enumerable: true },
    sessions: { get: () => index.size, enumerable: true },
    messagesRouted: { get: () => broker.stats.messagesRouted, enumerable: true },
    messagesDropped: { get: () => broker.stats.messagesDropped, enumerable: true },
  });

  const connectionOptions = {
    maxPacketSize: options.maxPacketSize ?? 1024 * 1024,
    connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
    receiveMaximum: options.receiveMaximum ?? 100,
    maxSessionExpirySeconds: options.maxSessionExpirySeconds ?? 86_400,
    maxOutboundBufferBytes: options.maxOutboundBufferBytes ?? 8 * 1024 * 1024,
    maxInflight: options.maxInflight ?? 20,
    topicAliasMaximum: options.topicAliasMaximum ?? 10,
    maxKeepAliveSeconds: options.maxKeepAliveSeconds ?? 0,
    maxSubscriptionsPerClient: options.maxSubscriptionsPerClient ?? 0,
    publishRatePerSecond: options.publishRatePerSecond ?? 0,
    ...(durability ? { durable: durability } : {}),
    ...(bus ? { announcesInterest: true } : {}),
  };

  // ---------------------------------------------------------------------------------------
  // Denied publications: counted always, logged at info at most once per DENIED_LOG_MS per
  // device with the number left unlogged, so a device publishing in a loop cannot flood the log.

  const deniedLog = new Map<string, { at: number; suppressed: number }>();
  const publishDenied = (conn: MqttConnection, topic: string): void => {
    const tenantId = conn.tenantId ?? '';
    options.metrics?.publishDenied(tenantId, 'acl');
    const key = `${tenantId}\u0000${conn.deviceId}`;
    const now = Date.now();
    const seen = deniedLog.get(key);
    if (seen && now - seen.at < DENIED_LOG_MS) {
      seen.suppressed++;
      return;
    }
    if (deniedLog.size >= 10_000) deniedLog.clear();
    deniedLog.set(key, { at: now, suppressed: 0 });
    log.info(
      { tenantId, deviceId: conn.deviceId, clientId: conn.clientId, topic, reason: 'ACL', ...(seen?.suppressed ? { alsoDenied: seen.suppressed } : {}) },
      'MQTT publish denied by the ACL; message dropped',
    );
  };

  const limitHit = (conn: MqttConnection, limit: LimitName): void => {
    options.metrics?.limitHit(limit);
    log.debug({ tenantId: conn.tenantId, deviceId: conn.deviceId, clientId: conn.clientId, limit }, 'MQTT limit reached');
  };

  /** Accepted connections (established or connecting past the verifier) per tenant. */
  const perTenant = new Map<string, number>();
  const admitted = new WeakSet<MqttConnection>();
  const admitTenant = (conn: MqttConnection, tenantId: string): LimitName | undefined => {
    if (options.maxConnections !== undefined && index.size >= options.maxConnections) return 'connections';
    const n = perTenant.get(tenantId) ?? 0;
    if (options.maxConnectionsPerTenant !== undefined && n >= options.maxConnectionsPerTenant) return 'tenant_connections';
    perTenant.set(tenantId, n + 1);
    admitted.add(conn);
    return undefined;
  };

  // ---------------------------------------------------------------------------------------
  // Kill switch

  let changeSeq = 0;
  const recentChanges: Array<{ seq: number; change: SessionChange }> = [];
  const probe = new SessionIndex<true>();

  const onSessionChange = (change: SessionChange): void => {
    changeSeq++;
    recentChanges.push({ seq: changeSeq, change });
    if (recentChanges.length > RECENT_CHANGES) recentChanges.shift();
    const victims = index.match(change);
    for (const conn of victims) {
      stats.sessionsKilled++;
      log.info(
        { tenantId: conn.tenantId, deviceId: conn.deviceId, clientId: conn.clientId, change: change.kind },
        'session closed: its credentials are no longer trusted',
      );
      conn.terminate('kill-switch', { will: false, reasonCode: RC5.administrativeAction, endSession: true });
    }
    if (change.kind === 'tenant') broker.endDetachedSessions(change.tenantId);
    else if (change.kind === 'device') broker.endDetachedSessions(change.tenantId, change.deviceId);
  };

  /** Did a change that matches these keys arrive after `since`? */
  const changedSince = (since: number, keys: SessionKeys): boolean => {
    if (since === changeSeq) return false;
    if (missedAt > since) return true;
    probe.add(true, keys);
    try {
      return recentChanges.some((c) => c.seq > since && probe.match(c.change).length > 0);
    } finally {
      probe.remove(true);
    }
  };

  const unsubscribeChanges = options.sessionChanges?.subscribe(onSessionChange);

  /** Closes the tenant's connections and forgets everything the broker kept for it, here. */
  const dropTenantHere = (tenantId: string): void => {
    onSessionChange({ kind: 'tenant', tenantId });
    for (const [key, held] of claims) if (key.startsWith(`${tenantId}\u0000`) && !held.connecting) claims.delete(key);
    durable?.forgetTenant(tenantId);
    if (broker.dropTenant(tenantId)) {
      stats.tenantsDropped++;
      log.info({ tenantId }, 'tenant deleted: its MQTT sessions, wills, queued and retained messages are gone');
    }
  };
  const unsubscribeDeletions = options.tenantDeletions?.subscribe((tenantId) => {
    dropTenantHere(tenantId);
    bus?.dropTenant(tenantId);
  });
  // Changes were missed: which sessions they closed is unknown, so every live session is decided
  // again (in small groups, to leave room for new CONNECTs), and those denied now are closed. A
  // session whose recheck cannot be decided (the store is down again) is tried again a second later.
  let missedAt = 0;
  let rechecking: Promise<void> | undefined;
  let recheckAgain = false;
  let recheckTimer: NodeJS.Timeout | undefined;
  /** One session decided again: kept, closed, or undecided (the verifier could not decide). */
  const recheckOne = async (conn: MqttConnection): Promise<'kept' | 'closed' | 'undecided'> => {
    const attachment = conn.attachment as Attachment | undefined;
    if (!attachment?.request || conn.closed) return 'kept';
    let decision: Decision;
    try {
      decision = await (options.verifier.recheck ?? options.verifier.authenticate).call(options.verifier, attachment.request);
    } catch {
      return 'undecided';
    }
    const kept =
      decision.result === 'allow' &&
      decision.tenantId === attachment.decision.tenantId &&
      decision.device.id === attachment.decision.device.id;
    if (kept || conn.closed) return 'kept';
    stats.sessionsKilled++;
    log.info(
      { tenantId: conn.tenantId, deviceId: conn.deviceId, clientId: conn.clientId, reason: decision.result === 'deny' ? decision.reason : 'DEVICE_CHANGED' },
      'session closed: decided again after missed changes, no longer allowed',
    );
    conn.terminate('kill-switch', { will: false, reasonCode: RC5.administrativeAction, endSession: true });
    return 'closed';
  };
  /**
   * After changes were missed: a tenant deleted meanwhile left its broker state here (retained
   * messages, detached sessions, wills, queued messages). Every tenant kept for is looked up at
   * once; those gone are dropped as on their deletion. False when the lookup failed.
   */
  const reconcileTenants = async (): Promise<boolean> => {
    const existing = options.tenantDeletions?.existing;
    if (!existing) return true;
    const held = new Set(broker.tenantIds());
    for (const conn of connections) if (conn.tenantId !== undefined) held.add(conn.tenantId);
    if (held.size === 0) return true;
    let found: Set<string>;
    try {
      found = await existing.call(options.tenantDeletions, [...held]);
    } catch (err) {
      unavailable.warn('tenant-lookup', { err: (err as Error).message }, 'tenants not looked up after missed changes; tried again every second');
      return false;
    }
    for (const tenantId of held) {
      if (found.has(tenantId) || closing) continue;
      log.info({ tenantId }, 'tenant no longer exists (deleted while changes were missed)');
      dropTenantHere(tenantId);
      bus?.dropTenant(tenantId);
    }
    return true;
  };
  const recheckAll = async (): Promise<void> => {
    const started = performance.now();
    let undecided = !(await reconcileTenants());
    const live = [...connections].filter((c) => (c.attachment as Attachment | undefined)?.request);
    const outcomes = { kept: 0, closed: 0, undecided: 0 };
    // RECHECK_PARALLEL at a time: the verifier shares its counter reads and batches its device
    // lookups among the decisions under way, so a larger group costs fewer round trips per session;
    // each group still ends before the next begins, leaving room for new CONNECTs in between.
    for (let i = 0; i < live.length && !closing; i += RECHECK_PARALLEL) {
      for (const outcome of await Promise.all(live.slice(i, i + RECHECK_PARALLEL).map(recheckOne))) outcomes[outcome]++;
    }
    if (outcomes.undecided) undecided = true;
    const report = { sessions: live.length, ...outcomes, ms: Math.round(performance.now() - started) };
    // Tried again every second while the store is away: one line per burst until it is back.
    if (undecided) unavailable.warn('recheck', report, 'live sessions not all decided again after missed changes; tried again every second');
    else log.info(report, 'live sessions decided again after missed changes');
    if (undecided && !closing) {
      // Only the re-check is tried again: no change is known to have landed since.
      recheckTimer = setTimeout(() => startRecheck(), 1_000);
      recheckTimer.unref();
    }
  };
  const onMissed = (): void => {
    missedAt = ++changeSeq;
    startRecheck();
  };
  const startRecheck = (): void => {
    if (rechecking) {
      recheckAgain = true;
      return;
    }
    rechecking = (async () => {
      do {
        recheckAgain = false;
        await recheckAll();
      } while (recheckAgain && !closing);
    })()
      .catch((err: unknown) => log.warn({ err }, 'live sessions not decided again'))
      .finally(() => (rechecking = undefined));
  };
  let closing = false;
  const unsubscribeMissed = options.sessionChanges?.onMissed?.(onMissed);

  // ---------------------------------------------------------------------------------------
  // CONNECT

  /**
   * The verifier's decision for a CONNECT. `again`: the CONNECT was decided already and a change
   * landed meanwhile; the second look has no side effects (the first decision is the one on
   * record), where the verifier offers one.
   */
  const decide = async (request: AuthenticateRequest, again = false): Promise<Decision> => {
    let timer: NodeJS.Timeout | undefined;
    const verifier = options.verifier;
    try {
      return await Promise.race([
        again && verifier.recheck ? verifier.recheck(request) : verifier.authenticate(request),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new VerifierUnavailableError('verifier did not answer in time')), authenticateTimeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };

  const sessionKeys = (decision: AllowDecision, chain: PeerChain): SessionKeys => {
    const fingerprints = chain.ders.map((d) => sha1Fingerprint(d));
    if (decision.trustedCertificateFingerprint) fingerprints.push(decision.trustedCertificateFingerprint);
    return { tenantId: decision.tenantId, deviceId: decision.device.id, fingerprints, serials: chain.serials };
  };

  const authenticate = async (conn: MqttConnection, packet: IConnectPacket): Promise<AuthOutcome> => {
    const socket = conn.socket as TLSSocket;
    const clientId = packet.clientId ?? '';
    const started = performance.now();
    /** Milliseconds since the CONNECT arrived, for the connection's log line. */
    const took = () => Math.round((performance.now() - started) * 10) / 10;
    const chain = peerChain(socket);
    if (!chain) {
      stats.notAuthorized++;
      log.info({ clientId, result: 'deny', reason: 'NO_CLIENT_CERTIFICATE', responseTimeMs: took() }, 'MQTT authentication denied');
      return { ok: false, code: 'not-authorized' };
    }
    const sni = typeof socket.servername === 'string' && socket.servername ? socket.servername : undefined;
    const request: AuthenticateRequest = {
      clientId,
      certificateChain: chain.ders.map((d) => d.toString('base64')),
      ...(packet.username !== undefined ? { username: packet.username } : {}),
      ...(sni ? { sni } : {}),
    };
    // Read from the certificate only for a line that is written (most CONNECTs log nothing below info).
    const leaf = () => ({ subject: chain.leaf.subject.replace(/\n/g, ','), serial: chain.serials[0] });

    // A kill-switch change can land while the verifier is deciding on state from before it;
    // the decision is then taken again, once, on the verifier's refreshed state.
    for (let attempt = 0; ; attempt++) {
      const mark = changeSeq;
      let decision: Decision;
      try {
        decision = await decide(request, attempt > 0);
      } catch (err) {
        stats.serverUnavailable++;
        unavailable.warn(
          'verifier-unavailable',
          { clientId, ...leaf(), result: 'unavailable', reason: (err as Error).message },
          'MQTT authentication failed: verifier unavailable; devices get "server unavailable"',
        );
        return { ok: false, code: 'server-unavailable' };
      }
      if (decision.result === 'deny') {
        stats.notAuthorized++;
        log.info({ clientId, ...leaf(), result: 'deny', reason: decision.reason, responseTimeMs: took() }, 'MQTT authentication denied');
        return { ok: false, code: 'not-authorized' };
      }
      const keys = sessionKeys(decision, chain);
      // With other listener processes the client id is claimed from them, which for a resumed
      // session means waiting for its state; a change that lands meanwhile counts as well.
      if (bus && clientId !== '' && !changedSince(mark, keys)) await claimSession(conn, decision, clientId, packet.clean === false);
      if (changedSince(mark, keys)) {
        // Decided again once, unless this CONNECT has claimed its session already.
        if (attempt === 0 && !conn.attachment) continue;
        stats.notAuthorized++;
        log.info({ clientId, ...leaf(), tenantId: decision.tenantId, deviceId: decision.device.id, result: 'deny', reason: 'REVOKED_DURING_CONNECT', responseTimeMs: took() }, 'MQTT authentication denied');
        return { ok: false, code: 'not-authorized' };
      }
      const attachment: Attachment = { ...(conn.attachment as Attachment | undefined), keys, decision, request };
      conn.attachment = attachment;
      if (log.isLevelEnabled('info')) {
        log.info(
          {
            clientId,
            ...leaf(),
            result: 'allow',
            tenantId: decision.tenantId,
            deviceId: decision.device.id,
            deviceName: decision.device.name,
            matchedBy: decision.matchedBy,
            protocol: conn.version,
            responseTimeMs: took(),
          },
          'MQTT authentication allowed',
        );
      }
      return { ok: true, tenantId: decision.tenantId, deviceId: decision.device.id, deviceName: decision.device.name, acl: decision.acl };
    }
  };

  /**
   * Takes the session of (tenant, client id) from whichever other process holds it, and waits for
   * its state when the client resumes a session this process does not have.
   */
  const claimSession = async (conn: MqttConnection, decision: AllowDecision, clientId: string, resume: boolean): Promise<void> => {
    const key = claimKey(decision.tenantId, clientId);
    const claimId = ++lastClaimId;
    claims.set(key, { claimId, connecting: conn });
    conn.attachment = { claim: { key, tenantId: decision.tenantId, clientId, claimId } } as Attachment;
    const handOver = resume && !broker.peek(decision.tenantId)?.sessions.has(clientId);
    const handed = bus!.claim({ tenantId: decision.tenantId, clientId, deviceId: decision.device.id, claimId, handOver });
    if (!handOver) return;
    const state = await handed;
    if (state && !conn.closed && state.deviceId === decision.device.id) {
      broker.space(decision.tenantId).adopt(state);
      // Its subscriptions get the messages published elsewhere from the CONNACK on.
      await rising.get(decision.tenantId);
    }
  };

  /** Another process took a session this process holds (or is connecting for). */
  const takeOver = (claim: SessionClaim): SessionState | undefined => {
    const key = claimKey(claim.tenantId, claim.clientId);
    const held = claims.get(key);
    // A later claim of this process is on its way and wins over the other one.
    if (!held || held.claimId !== claim.claimId) return undefined;
    claims.delete(key);
    held.connecting?.terminate('takeover', { will: false });
    const space = broker.peek(claim.tenantId);
    const session = space?.sessions.get(claim.clientId);
    if (!space || !session) return undefined;
    const outlet = session.outlet;
    if (outlet instanceof MqttConnection) outlet.terminate('takeover', { will: true, reasonCode: RC5.sessionTakenOver });
    if (space.sessions.get(claim.clientId) !== session) return undefined; // it ended with its connection
    if (claim.handOver && session.deviceId === claim.deviceId) return space.handOver(session);
    space.endSession(session);
    return undefined;
  };

  const stopReceiving = bus?.receive({
    publish(tenantId, message) {
      // Only a retained message needs a tenant space made for it here.
      const mark = durable?.changes;
      (message.retain ? broker.space(tenantId) : broker.peek(tenantId))?.route(message);
      return durable && durable.changes !== mark ? durable.committed() : undefined;
    },
    retain(tenantId, message) {
      // Stored by the process it was published on.
      broker.space(tenantId).retain(message, false);
    },
    takeOver,
    adopt(tenantId, state) {
      const key = claimKey(tenantId, state.clientId);
      if (claims.has(key) || !broker.space(tenantId).adopt(state)) return;
      claims.set(key, { claimId: 0 });
    },
    dropTenant: dropTenantHere,
    sharedProcesses: (tenantId, key, filter, processes) => broker.setSharedProcesses(tenantId, key, filter, processes),
    interest(tenantId, process, level) {
      let r = remote.get(tenantId);
      if (!r) remote.set(tenantId, (r = { max: 0, by: new Map() }));
      if (level === 0) r.by.delete(process);
      else r.by.set(process, level);
      r.max = 0;
      for (const l of r.by.values()) if (l > r.max) r.max = l;
      if (r.by.size === 0) remote.delete(tenantId);
    },
  });

  const hooks = {
    authenticate,
    publishDenied,
    limitHit,
    admitTenant,
    established(conn: MqttConnection) {
      const a = conn.attachment as Attachment;
      stats.accepted++;
      if (a.claim) {
        const held = claims.get(a.claim.key);
        if (held?.connecting === conn) held.connecting = undefined;
      }
      index.add(conn, a.keys);
      try {
        options.connectionRecorder?.connected(a.decision.tenantId, a.decision.device.id, new Date());
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'connection recorder failed');
      }
    },
    closed(conn: MqttConnection) {
      connections.delete(conn);
      index.remove(conn);
      if (admitted.has(conn) && conn.tenantId !== undefined) {
        admitted.delete(conn);
        const n = (perTenant.get(conn.tenantId) ?? 1) - 1;
        if (n <= 0) perTenant.delete(conn.tenantId);
        else perTenant.set(conn.tenantId, n);
      }
      const claim = (conn.attachment as Attachment | undefined)?.claim;
      const held = claim && claims.get(claim.key);
      if (claim && held?.connecting === conn) {
        // The CONNECT did not get through; the claim stays only for a session this process keeps.
        held.connecting = undefined;
        if (!broker.peek(claim.tenantId)?.sessions.has(claim.clientId)) {
          claims.delete(claim.key);
          bus!.release(claim.tenantId, claim.clientId, claim.claimId);
        }
      }
    },
  };

  // ---------------------------------------------------------------------------------------
  // TLS

  const tlsCert = options.tls.ca
    ? `${options.tls.cert.toString().trimEnd()}\n${options.tls.ca.toString().trim()}\n`
    : options.tls.cert;
  const server = tls.createServer({
    cert: tlsCert,
    key: options.tls.key,
    requestCert: true,
    // Any certificate (or none) passes the handshake; the verifier decides at CONNECT.
    rejectUnauthorized: false,
    handshakeTimeout: options.handshakeTimeoutMs ?? 10_000,
    minVersion: 'TLSv1.2',
    // No session resumption: a resumed session keeps the client's leaf but not its
    // intermediates (see peer-chain.ts), and every connection is decided on its full chain.
    secureOptions: cryptoConstants.SSL_OP_NO_TICKET,
  });
  // Sockets still in their handshake or CONNECT count too; beyond twice the limit they are not
  // accepted at all, so a flood of idle TCP connections cannot hold unbounded memory.
  if (options.maxConnections !== undefined) server.maxConnections = options.maxConnections * 2;

  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    socket.setNoDelay(true);
    const conn = new MqttConnection(socket, broker, hooks, connectionOptions, stats, log);
    connections.add(conn);
  });
  server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    stats.tlsErrors++;
    // Scanners, clients without a certificate or trusting another server CA, resets: expected,
    // so one line per kind and burst (the first one's address), no stack.
    const reason = err.code ?? err.message.split('\n')[0]!;
    handshakes.info(reason, { remote: socket.remoteAddress, reason }, 'TLS handshake failed');
    // With a 'tlsClientError' listener Node leaves the socket open (a handshake timeout included).
    socket.destroy();
  });
  server.on('error', (err) => log.error({ err }, 'MQTT listener error'));

  let closed = false;
  return {
    stats,
    async listen() {
      if (durable && !bus) {
        // The retained messages and persistent sessions of before the restart (or the crash), in
        // place before the first client; the sessions detached until their clients come back.
        for (const { tenantId, message } of await durable.loadRetained()) broker.space(tenantId).retained.set(message.topic, message);
        for (const { tenantId, state, expiresAt } of await durable.loadSessions()) {
          broker.space(tenantId).adopt({ ...state, expiryMs: Math.max(1, expiresAt - Date.now()) });
        }
      }
      return new Promise((resolve, reject) => {
        const onError = (err: Error) => reject(err);
        server.once('error', onError);
        server.listen(options.port, options.host ?? '0.0.0.0', () => {
          server.off('error', onError);
          const port = (server.address() as AddressInfo).port;
          log.info({ host: options.host ?? '0.0.0.0', port }, 'MQTT mTLS listener started');
          resolve({ port });
        });
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      closing = true;
      clearTimeout(recheckTimer);
      unsubscribeChanges?.();
      unsubscribeDeletions?.();
      unsubscribeMissed?.();
      stopReceiving?.();
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const conn of [...connections]) {
        conn.terminate('shutdown', { will: false, reasonCode: RC5.serverShuttingDown });
      }
      for (const s of sockets) s.destroy();
      await done;
      // Persistent sessions outlive the process: their rows stay for the next start (the store
      // writes what the closed connections changed when it closes, after the listener).
      storing = false;
      broker.close();
    },
  };
}
