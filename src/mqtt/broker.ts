/**
 * The message router behind the listener: one isolated space per tenant (subscriptions, retained
 * messages, sessions), so a message can only ever reach sessions of the tenant it was published
 * in. Isolation is structural: there is no shared topic namespace to prefix and strip, and client
 * identifiers are unique per tenant only (two tenants may both have a client `dev1`).
 *
 * MQTT semantics follow MQTT 3.1.1 and MQTT 5 sections 3.3 and 4.3-4.8: QoS 0 and 1 delivery
 * (QoS 2 publications are accepted and delivered at QoS 1 at most), retained messages, no-local,
 * retain-as-published, retain handling, subscription identifiers, message expiry, and sessions that
 * outlive their connection when the client asks for it.
 */
import { RetainedTree, SubscriptionTree } from './topic-tree.js';

export type QoS = 0 | 1 | 2;

/** The MQTT 5 PUBLISH properties a broker forwards unchanged (MQTT 5 3.3.2.3). */
export interface ForwardedProperties {
  payloadFormatIndicator?: boolean;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Buffer;
  userProperties?: Record<string, string | string[]>;
}

export interface Message {
  topic: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  properties?: ForwardedProperties;
  /** Epoch ms after which the message is not delivered (MQTT 5 Message Expiry Interval). */
  expiresAt?: number;
}

export interface SubscriptionOptions {
  /** Granted QoS: the maximum QoS of messages sent for this subscription. */
  qos: 0 | 1;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId?: number;
}

/** What a session needs from the live connection it is attached to. */
export interface Outlet {
  /** The client's Receive Maximum: QoS 1 messages in flight at once (MQTT 5 3.1.2.11.3). */
  readonly receiveMaximum: number;
  /** Writes one PUBLISH; false when it was not sent (too large for the client, or a slow client's QoS 0). */
  sendPublish(p: OutgoingPublish): boolean;
}

export interface OutgoingPublish {
  message: Message;
  qos: 0 | 1;
  retain: boolean;
  messageId?: number;
  dup: boolean;
  subscriptionIds?: number[];
}

export interface BrokerLimits {
  /** Retained messages kept per tenant; further new retained topics are not stored. */
  maxRetainedPerTenant: number;
  /** QoS 1 messages queued per session beyond those in flight (mosquitto's max_queued_messages). */
  maxQueuedPerSession: number;
}

export const DEFAULT_LIMITS: BrokerLimits = { maxRetainedPerTenant: 100_000, maxQueuedPerSession: 1_000 };

export interface BrokerStats {
  messagesRouted: number;
  messagesDropped: number;
}

/**
 * What a broker tells its owner, so a broker spread over several processes (mqtt-cluster.ts)
 * can carry messages and session ownership to the others.
 */
export interface BrokerEvents {
  /** A client of this broker published `message` (its will included). */
  published?(tenantId: string, message: Message): void;
  /** A session ended for good and left the tenant's sessions. */
  sessionEnded?(session: Session): void;
}

/**
 * A session's state (MQTT 4.1) in a form another process can take over: what a client resuming
 * its session on another listener process must find there.
 */
export interface SessionState {
  clientId: string;
  deviceId: string;
  expiryMs: number;
  subscriptions: Array<[string, SubscriptionOptions]>;
  /** QoS 1 messages sent and not acknowledged, by packet identifier: sent again with DUP on attach. */
  inflight: Array<[number, OutgoingPublish]>;
  queued: OutgoingPublish[];
  nextId: number;
}

interface InflightEntry {
  p: OutgoingPublish;
}

/**
 * One MQTT session (MQTT 4.1): subscriptions, QoS 1 messages in flight and queued. It is attached
 * to at most one connection; a persistent session waits detached until it expires or the client
 * comes back.
 */
export class Session {
  readonly subscriptions = new Map<string, SubscriptionOptions>();
  outlet: Outlet | undefined;
  /** Ms a detached session is kept; 0 ends it with its connection. */
  expiryMs = 0;
  expiryTimer: NodeJS.Timeout | undefined;
  /** A will waiting out its Will Delay Interval; cancelled when the client comes back. */
  willTimer: NodeJS.Timeout | undefined;
  private readonly inflight = new Map<number, InflightEntry>();
  private readonly queue: OutgoingPublish[] = [];
  private nextId = 1;

  constructor(
    readonly space: TenantSpace,
    readonly clientId: string,
    /** The device that owns the session: a session is never handed to another device. */
    readonly deviceId: string,
  ) {}

  get inflightCount(): number {
    return this.inflight.size;
  }

  get queuedCount(): number {
    return this.queue.length;
  }

  /** Delivers one message to this session at `qos`, now or when the client is able to take it. */
  deliver(message: Message, qos: 0 | 1, retain: boolean, subscriptionIds?: number[]): void {
    const p: OutgoingPublish = { message, qos, retain, dup: false, ...(subscriptionIds ? { subscriptionIds } : {}) };
    if (qos === 0) {
      if (!this.outlet || !this.outlet.sendPublish(p)) this.space.stats.messagesDropped++;
      return;
    }
    if (this.outlet && this.queue.length === 0 && this.inflight.size < this.outlet.receiveMaximum) {
      this.sendQos1(p);
      return;
    }
    if (this.queue.length >= this.space.limits.maxQueuedPerSession) {
      this.space.stats.messagesDropped++;
      return;
    }
    this.queue.push(p);
  }

  /** PUBACK from the client. */
  acknowledge(messageId: number): void {
    if (this.inflight.delete(messageId)) this.pump();
  }

  /**
   * Attaches a connection. Messages left in flight by the previous connection are sent again
   * with DUP set (MQTT 4.4), then the queue drains.
   */
  attach(outlet: Outlet): void {
    this.outlet = outlet;
    if (this.expiryTimer) {
      clearTimeout(this.expiryTimer);
      this.expiryTimer = undefined;
    }
    if (this.willTimer) {
      // MQTT 5 3.1.3.2.2: a client back before the delay ran out has its will discarded.
      clearTimeout(this.willTimer);
      this.willTimer = undefined;
    }
    for (const [id, entry] of this.inflight) {
      if (expired(entry.p.message)) {
        this.inflight.delete(id);
        continue;
      }
      outlet.sendPublish({ ...entry.p, messageId: id, dup: true });
    }
    this.pump();
  }

  detach(outlet: Outlet): void {
    if (this.outlet === outlet) this.outlet = undefined;
  }

  /** Subscriptions and QoS 1 messages of a detached session, to continue in another process. */
  state(): SessionState {
    return {
      clientId: this.clientId,
      deviceId: this.deviceId,
      expiryMs: this.expiryMs,
      subscriptions: [...this.subscriptions],
      inflight: [...this.inflight].map(([id, e]) => [id, e.p]),
      queued: [...this.queue],
      nextId: this.nextId,
    };
  }

  /** Takes over the messages of a session state (its subscriptions are the tenant space's part). */
  restore(state: SessionState): void {
    this.expiryMs = state.expiryMs;
    for (const [id, p] of state.inflight) this.inflight.set(id, { p });
    this.queue.push(...state.queued);
    this.nextId = state.nextId;
  }

  private pump(): void {
    const outlet = this.outlet;
    if (!outlet) return;
    while (this.queue.length && this.inflight.size < outlet.receiveMaximum) {
      const p = this.queue.shift()!;
      if (expired(p.message)) {
        this.space.stats.messagesDropped++;
        continue;
      }
      this.sendQos1(p);
    }
  }

  private sendQos1(p: OutgoingPublish): void {
    const messageId = this.allocateId();
    const sent: OutgoingPublish = { ...p, messageId };
    if (this.outlet!.sendPublish(sent)) this.inflight.set(messageId, { p: sent });
    else this.space.stats.messagesDropped++;
  }

  /** Packet identifiers 1..65535 not in flight (MQTT 2.2.1). */
  private allocateId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = id === 65535 ? 1 : id + 1;
      if (!this.inflight.has(id)) return id;
    }
  }
}

function expired(m: Message, now = Date.now()): boolean {
  return m.expiresAt !== undefined && now >= m.expiresAt;
}

interface Match {
  qos: 0 | 1;
  noLocal: boolean;
  retainAsPublished: boolean;
  ids?: number[];
}

/** Everything one tenant's devices share: and nothing they share with any other tenant. */
export class TenantSpace {
  readonly subscriptions = new SubscriptionTree<Session, SubscriptionOptions>();
  readonly retained = new RetainedTree<Message>();
  readonly sessions = new Map<string, Session>();

  constructor(
    readonly tenantId: string,
    readonly limits: BrokerLimits,
    readonly stats: BrokerStats,
    private readonly events: BrokerEvents = {},
  ) {}

  /** A message published by a client of this broker: routed here and announced to the owner. */
  publish(message: Message, from?: Session): void {
    this.route(message, from);
    this.events.published?.(this.tenantId, message);
  }

  /**
   * Routes a message to every matching subscription of this tenant; `from` is the publishing
   * session (for no-local). Overlapping subscriptions of one session yield one copy at the highest
   * granted QoS, carrying every matching subscription identifier (MQTT 5 3.3.4).
   */
  route(message: Message, from?: Session): void {
    if (message.retain) this.retain(message);
    const matches = new Map<Session, Match>();
    this.subscriptions.match(message.topic, (session, opts) => {
      const m = matches.get(session);
      if (!m) {
        matches.set(session, {
          qos: opts.qos,
          noLocal: opts.noLocal,
          retainAsPublished: opts.retainAsPublished,
          ...(opts.subscriptionId !== undefined ? { ids: [opts.subscriptionId] } : {}),
        });
        return;
      }
      if (opts.qos > m.qos) m.qos = opts.qos;
      m.noLocal &&= opts.noLocal;
      m.retainAsPublished ||= opts.retainAsPublished;
      if (opts.subscriptionId !== undefined) (m.ids ??= []).push(opts.subscriptionId);
    });
    this.stats.messagesRouted++;
    for (const [session, m] of matches) {
      if (m.noLocal && session === from) continue;
      const qos = Math.min(message.qos, m.qos) as 0 | 1;
      // Without retain-as-published the RETAIN flag is cleared on normal forwarding (MQTT 3.3.1.3).
      session.deliver(message, qos, m.retainAsPublished && message.retain, m.ids);
    }
  }

  /** MQTT 3.3.1.3: a retained message with an empty payload removes the retained message. */
  retain(message: Message): void {
    if (message.payload.length === 0) {
      this.retained.delete(message.topic);
      return;
    }
    if (this.retained.size >= this.limits.maxRetainedPerTenant && this.retained.get(message.topic) === undefined) {
      this.stats.messagesDropped++;
      return;
    }
    // Stored with QoS and properties as published; the stored copy is always flagged retained.
    this.retained.set(message.topic, { ...message, retain: true });
  }

  /**
   * Adds or replaces a subscription and sends the matching retained messages as the Retain
   * Handling option asks (MQTT 5 3.8.3.1; MQTT 3.1.1 always sends them).
   */
  subscribe(session: Session, filter: string, opts: SubscriptionOptions): void {
    const isNew = this.subscriptions.add(filter, session, opts);
    session.subscriptions.set(filter, opts);
    if (opts.retainHandling === 2 || (opts.retainHandling === 1 && !isNew)) return;
    const now = Date.now();
    const ids = opts.subscriptionId !== undefined ? [opts.subscriptionId] : undefined;
    this.retained.match(filter, (m) => {
      if (expired(m, now)) {
        this.retained.delete(m.topic);
        return;
      }
      session.deliver(m, Math.min(m.qos, opts.qos) as 0 | 1, true, ids);
    });
  }

  unsubscribe(session: Session, filter: string): boolean {
    session.subscriptions.delete(filter);
    return this.subscriptions.remove(filter, session);
  }

  /** Existing session for a client id, or a fresh one; the old one is dropped when `clean`. */
  openSession(clientId: string, deviceId: string, clean: boolean): { session: Session; present: boolean } {
    const existing = this.sessions.get(clientId);
    if (existing) {
      // A session belongs to the device that made it: another device reusing the client id
      // starts afresh and never sees the first device's subscriptions or queued messages.
      if (!clean && existing.deviceId === deviceId) {
        if (existing.expiryTimer) clearTimeout(existing.expiryTimer);
        existing.expiryTimer = undefined;
        return { session: existing, present: true };
      }
      this.endSession(existing);
    }
    const session = new Session(this, clientId, deviceId);
    this.sessions.set(clientId, session);
    return { session, present: false };
  }

  /** Ends a session for good: its subscriptions and queued messages are dropped. */
  endSession(session: Session): void {
    if (session.expiryTimer) clearTimeout(session.expiryTimer);
    session.expiryTimer = undefined;
    for (const filter of [...session.subscriptions.keys()]) this.unsubscribe(session, filter);
    if (this.sessions.get(session.clientId) === session) {
      this.sessions.delete(session.clientId);
      this.events.sessionEnded?.(session);
    }
  }

  /**
   * Ends a detached session here and returns its state for another process, where its client
   * has come back: its will is not published (MQTT 5 3.1.3.2.2, the client is back in time).
   */
  handOver(session: Session): SessionState {
    clearTimeout(session.willTimer);
    session.willTimer = undefined;
    const state = session.state();
    this.endSession(session);
    return state;
  }

  /**
   * A session handed over by another process, kept detached until its client's CONNECT attaches
   * it (or it expires). Returns undefined when this tenant already has a session for the client id.
   */
  adopt(state: SessionState): Session | undefined {
    if (this.sessions.has(state.clientId)) return undefined;
    const session = new Session(this, state.clientId, state.deviceId);
    session.restore(state);
    for (const [filter, opts] of state.subscriptions) {
      this.subscriptions.add(filter, session, opts);
      session.subscriptions.set(filter, opts);
    }
    this.sessions.set(state.clientId, session);
    this.releaseSession(session);
    return session;
  }

  /** After its connection closed: ended now, or kept until it expires. */
  releaseSession(session: Session): void {
    if (session.outlet) return;
    if (session.expiryMs <= 0) {
      this.endSession(session);
      return;
    }
    if (session.expiryTimer) clearTimeout(session.expiryTimer);
    session.expiryTimer = setTimeout(() => {
      if (!session.outlet) this.endSession(session);
    }, Math.min(session.expiryMs, 2 ** 31 - 1));
    session.expiryTimer.unref();
  }

  get isEmpty(): boolean {
    return this.sessions.size === 0 && this.retained.size === 0;
  }
}

/** Tenant spaces by tenant id, made on first use. */
export class Broker {
  readonly stats: BrokerStats = { messagesRouted: 0, messagesDropped: 0 };
  private readonly spaces = new Map<string, TenantSpace>();

  constructor(
    readonly limits: BrokerLimits = DEFAULT_LIMITS,
    private readonly events: BrokerEvents = {},
  ) {}

  space(tenantId: string): TenantSpace {
    let s = this.spaces.get(tenantId);
    if (!s) {
      s = new TenantSpace(tenantId, this.limits, this.stats, this.events);
      this.spaces.set(tenantId, s);
    }
    return s;
  }

  peek(tenantId: string): TenantSpace | undefined {
    return this.spaces.get(tenantId);
  }

  /** Ends every session of a device (or of the whole tenant) that is kept detached. */
  endDetachedSessions(tenantId: string, deviceId?: string): void {
    const s = this.spaces.get(tenantId);
    if (!s) return;
    for (const session of [...s.sessions.values()]) {
      if (!session.outlet && (deviceId === undefined || session.deviceId === deviceId)) s.endSession(session);
    }
  }

  /** Every retained message of every tenant, expired ones left out. */
  forEachRetained(visit: (tenantId: string, message: Message) => void): void {
    const now = Date.now();
    for (const [tenantId, s] of this.spaces) {
      s.retained.forEach((m) => {
        if (!expired(m, now)) visit(tenantId, m);
      });
    }
  }

  get tenantCount(): number {
    return this.spaces.size;
  }

  close(): void {
    for (const s of this.spaces.values()) {
      for (const session of [...s.sessions.values()]) {
        clearTimeout(session.willTimer);
        s.endSession(session);
      }
    }
    this.spaces.clear();
  }
}
