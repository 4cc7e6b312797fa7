/**
 * The message router behind the listener: one isolated space per tenant (subscriptions, retained
 * messages, sessions), so a message can only ever reach sessions of the tenant it was published
 * in. Isolation is structural: there is no shared topic namespace to prefix and strip, and client
 * identifiers are unique per tenant only (two tenants may both have a client `dev1`).
 *
 * MQTT semantics follow MQTT 3.1.1 and MQTT 5 sections 3.3 and 4.3-4.8: QoS 0, 1 and 2 delivery,
 * retained messages, no-local, retain-as-published, retain handling, subscription identifiers,
 * shared subscriptions, message expiry, and sessions that outlive their connection when the
 * client asks for it.
 */
import { randomBytes } from 'node:crypto';
import { RetainedTree, SubscriptionTree } from './topic-tree.js';
import { deniesTopic, topicMatches } from './topics.js';

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
  /**
   * With several listener processes: for each shared subscription (by its `$share/...` filter)
   * the process whose member gets this message, chosen by the process it was published on.
   */
  sharedTo?: Record<string, number>;
}

/**
 * Shared subscriptions across listener processes: which processes have members of each group, so
 * the process a message is published on picks one of them per group (mqtt-cluster.ts).
 */
export interface SharedDirectory {
  /** This process. */
  self: number;
  /** By tenant, then by `$share/...` filter: the group's filter and the processes with members. */
  groups: Map<string, Map<string, { filter: string; processes: number[]; turn: number }>>;
}

export interface SubscriptionOptions {
  /** Granted QoS: the maximum QoS of messages sent for this subscription. */
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId?: number;
}

/** What a session needs from the live connection it is attached to. */
export interface Outlet {
  /**
   * QoS 1 and 2 messages in flight at once: the client's Receive Maximum (MQTT 5 3.1.2.11.3),
   * bounded by the listener's own in-flight limit.
   */
  readonly receiveMaximum: number;
  /** Writes one PUBLISH; false when it was not sent (too large for the client, or a slow client's QoS 0). */
  sendPublish(p: OutgoingPublish): boolean;
  /** Writes a PUBREL (the second half of an outbound QoS 2 exchange, MQTT 4.3.3). */
  sendPubrel(messageId: number): void;
}

export interface OutgoingPublish {
  message: Message;
  qos: QoS;
  retain: boolean;
  messageId?: number;
  dup: boolean;
  subscriptionIds?: number[];
}

export interface BrokerLimits {
  /** Retained messages kept per tenant; further new retained topics are not stored. */
  maxRetainedPerTenant: number;
  /** QoS 1 and 2 messages queued per session beyond those in flight (mosquitto's max_queued_messages). */
  maxQueuedPerSession: number;
}

export const DEFAULT_LIMITS: BrokerLimits = { maxRetainedPerTenant: 100_000, maxQueuedPerSession: 1_000 };

/** Why a message did not reach a subscriber (or the retained store). */
export type DropReason = 'queue_full' | 'retained_full' | 'expired' | 'not_sent' | 'offline_qos0';

export interface BrokerStats {
  messagesRouted: number;
  messagesDropped: number;
  /** Drops by reason; their sum is `messagesDropped`. */
  dropped: Record<DropReason, number>;
}

export function newBrokerStats(): BrokerStats {
  return { messagesRouted: 0, messagesDropped: 0, dropped: { queue_full: 0, retained_full: 0, expired: 0, not_sent: 0, offline_qos0: 0 } };
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
  /** A message was not delivered to a session (or not retained). */
  dropped?(tenantId: string, reason: DropReason): void;
  /**
   * A retained message was stored, or (`message` undefined) removed, by a publication of this
   * broker's own clients; `expired`: removed because it expired (a newer one may have replaced it
   * elsewhere meanwhile).
   */
  retained?(tenantId: string, topic: string, message: Message | undefined, expired?: boolean): void;
  /**
   * A session whose state is kept (session expiry above 0, or stored before) changed: its
   * subscriptions, queued or in-flight messages, QoS 2 packet identifiers or expiry.
   */
  sessionChanged?(session: Session): void;
  /** A session that was stored ended for good (not moved to another process): its row goes. */
  sessionDeleted?(session: Session): void;
  /** A shared subscription got its first member in this process (`present`), or lost its last. */
  sharedGroup?(tenantId: string, key: string, filter: string, present: boolean): void;
  /** The tenant's interest in messages here changed (see `TenantSpace.interest`). */
  interest?(tenantId: string, level: Interest): void;
}

/**
 * What a tenant's sessions in one process want of messages published elsewhere: 0 none (no
 * session has a subscription), 1 messages (some session subscribes), 2 messages that must be
 * stored before their publisher is acknowledged (a session kept beyond its connection subscribes).
 */
export type Interest = 0 | 1 | 2;

/**
 * A session's state (MQTT 4.1) in a form another process can take over: what a client resuming
 * its session on another listener process must find there.
 */
export interface SessionState {
  clientId: string;
  deviceId: string;
  expiryMs: number;
  subscriptions: Array<[string, SubscriptionOptions]>;
  /**
   * QoS 1 and 2 messages sent and not acknowledged, by packet identifier: sent again with DUP on
   * attach, or (QoS 2 with PUBREC received) their PUBREL sent again.
   */
  inflight: Array<[number, OutgoingPublish, boolean?]>;
  queued: OutgoingPublish[];
  nextId: number;
  /** Packet identifiers of QoS 2 publications received and awaiting the client's PUBREL. */
  inboundQos2?: number[];
  /** Which incarnation of the session wrote its stored row (see `Session.holder`). */
  holder?: string;
  /** A client was connected to it when it was written (its expiry runs from the next start). */
  attached?: boolean;
}

/** Names the sessions of this process apart from those of other processes and earlier runs. */
const HOLDER_PREFIX = randomBytes(6).toString('hex');
let holderSeq = 0;

interface InflightEntry {
  p: OutgoingPublish;
  /** QoS 2: PUBREC received and PUBREL sent; waiting for PUBCOMP. */
  released?: boolean;
}

/**
 * One MQTT session (MQTT 4.1): subscriptions, QoS 1 and 2 messages in flight and queued, and the
 * packet identifiers of QoS 2 messages received and not yet released. It is attached
 * to at most one connection; a persistent session waits detached until it expires or the client
 * comes back.
 */
export class Session {
  readonly subscriptions = new Map<string, SubscriptionOptions>();
  outlet: Outlet | undefined;
  /** Ms a detached session is kept; 0 ends it with its connection. */
  expiryMs = 0;
  /** While detached: epoch ms it expires at. */
  expiresAt: number | undefined;
  expiryTimer: NodeJS.Timeout | undefined;
  /**
   * Topic filters the device may not receive (its ACL's subscribe deny rules, set by the
   * connection attached): a message on a topic they match is not delivered, whatever subscription
   * matched it. Undefined, the usual case, costs nothing.
   */
  readDenied: readonly string[] | undefined;
  /** A will waiting out its Will Delay Interval; cancelled when the client comes back. */
  willTimer: NodeJS.Timeout | undefined;
  /** The will that `willTimer` publishes. */
  pendingWill: Message | undefined;
  /**
   * QoS 2 PUBLISH packet identifiers received from the client whose PUBREL has not come yet
   * (MQTT 4.3.3, method B): a PUBLISH with one of them is a retransmission and is not routed
   * again, across reconnects too ([MQTT-4.3.3-9]).
   */
  readonly inboundQos2 = new Set<number>();
  /** Counted in its space's interest: as a session with subscriptions, kept beyond its connection or not. */
  interested: 'live' | 'stored' | undefined;
  /**
   * Names this incarnation of the session in its stored row, so that removing the row of a session
   * that ended never removes the row a newer session with the same client id wrote meanwhile.
   */
  holder = `${HOLDER_PREFIX}.${++holderSeq}`;
  /** The store has (or is about to have) a row for this session. */
  stored = false;
  /** Changes are not announced (while a session that is stored already is set up again). */
  quiet = false;
  private readonly inflight = new Map<number, InflightEntry>();
  private readonly queue: OutgoingPublish[] = [];
  private nextId = 1;

  constructor(
    readonly space: TenantSpace,
    readonly clientId: string,
    /** The device that owns the session: a session is never handed to another device. */
    readonly deviceId: string,
  ) {}

  /**
   * Announces a change of the session's state when the session is kept beyond its connection or
   * was stored before; a session that ends with its connection costs nothing here.
   */
  touch(): void {
    if ((this.expiryMs > 0 || this.stored) && !this.quiet) this.space.changed(this);
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  get queuedCount(): number {
    return this.queue.length;
  }

  /** Delivers one message to this session at `qos`, now or when the client is able to take it. */
  deliver(message: Message, qos: QoS, retain: boolean, subscriptionIds?: number[]): void {
    // Refused silently, as mosquitto skips a subscriber without read access (src/subs.c, subs__send).
    if (this.readDenied && deniesTopic(this.readDenied, message.topic)) return;
    const p: OutgoingPublish = { message, qos, retain, dup: false, ...(subscriptionIds ? { subscriptionIds } : {}) };
    if (qos === 0) {
      if (!this.outlet) this.space.dropped('offline_qos0');
      else if (!this.outlet.sendPublish(p)) this.space.dropped('not_sent');
      return;
    }
    if (this.outlet && this.queue.length === 0 && this.inflight.size < this.outlet.receiveMaximum) {
      this.sendInflight(p);
      this.touch();
      return;
    }
    if (this.queue.length >= this.space.limits.maxQueuedPerSession) {
      this.space.dropped('queue_full');
      return;
    }
    this.queue.push(p);
    this.touch();
  }

  /** PUBACK from the client: the QoS 1 exchange ends (MQTT 4.3.2). */
  acknowledge(messageId: number): void {
    const entry = this.inflight.get(messageId);
    if (entry?.p.qos !== 1) return;
    this.inflight.delete(messageId);
    this.pump();
    this.touch();
  }

  /**
   * PUBREC from the client (MQTT 4.3.3): the message is the client's now; PUBREL follows. A
   * PUBREC with a failure reason code (0x80 or above) ends the exchange ([MQTT-4.3.3-4] does not
   * apply then, MQTT 5 4.3.3). False when no QoS 2 message with that identifier is in flight.
   */
  received(messageId: number, reasonCode = 0): boolean {
    const entry = this.inflight.get(messageId);
    if (!entry || entry.p.qos !== 2) return false;
    if (reasonCode >= 0x80) {
      this.inflight.delete(messageId);
      this.pump();
      this.touch();
      return true;
    }
    // [MQTT-4.3.3-5]: the message is not sent again once PUBREC came; only the PUBREL is (after
    // the change is stored, for a stored session: see Outlet.sendPubrel).
    entry.released = true;
    this.touch();
    this.outlet?.sendPubrel(messageId);
    return true;
  }

  /** PUBCOMP from the client: the QoS 2 exchange ends and the packet identifier is free. */
  completed(messageId: number): void {
    const entry = this.inflight.get(messageId);
    if (!entry || entry.p.qos !== 2) return;
    this.inflight.delete(messageId);
    this.pump();
    this.touch();
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
      this.pendingWill = undefined;
    }
    // [MQTT-4.4.0-1]: unacknowledged PUBLISH packets are sent again with DUP, and PUBREL packets
    // sent again, in their original order.
    for (const [id, entry] of this.inflight) {
      if (entry.released) {
        outlet.sendPubrel(id);
        continue;
      }
      if (expired(entry.p.message)) {
        this.inflight.delete(id);
        this.space.dropped('expired');
        continue;
      }
      outlet.sendPublish({ ...entry.p, messageId: id, dup: true });
    }
    this.pump();
    this.touch();
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
      inflight: [...this.inflight].map(([id, e]) => [id, e.p, !!e.released]),
      queued: [...this.queue],
      nextId: this.nextId,
      inboundQos2: [...this.inboundQos2],
      holder: this.holder,
      attached: this.outlet !== undefined,
    };
  }

  /** Takes over the messages of a session state (its subscriptions are the tenant space's part). */
  restore(state: SessionState): void {
    this.expiryMs = state.expiryMs;
    for (const [id, p, released] of state.inflight) this.inflight.set(id, released ? { p, released } : { p });
    this.queue.push(...state.queued);
    this.nextId = state.nextId;
    for (const id of state.inboundQos2 ?? []) this.inboundQos2.add(id);
    // Its row stays where it is, under the name it was written with.
    if (state.holder !== undefined) {
      this.holder = state.holder;
      this.stored = true;
    }
  }

  private pump(): void {
    const outlet = this.outlet;
    if (!outlet) return;
    while (this.queue.length && this.inflight.size < outlet.receiveMaximum) {
      const p = this.queue.shift()!;
      if (expired(p.message)) {
        this.space.dropped('expired');
        continue;
      }
      // Queued while detached, before the ACL the client came back with was known.
      if (this.readDenied && deniesTopic(this.readDenied, p.message.topic)) continue;
      this.sendInflight(p);
    }
  }

  /** Sends a QoS 1 or 2 message under a fresh packet identifier and keeps it until acknowledged. */
  private sendInflight(p: OutgoingPublish): void {
    const messageId = this.allocateId();
    const sent: OutgoingPublish = { ...p, messageId };
    if (this.outlet!.sendPublish(sent)) this.inflight.set(messageId, { p: sent });
    else this.space.dropped('not_sent');
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
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  ids?: number[];
}

/** `$share/{ShareName}/{filter}` split in its parts (MQTT 5 4.8.2), or undefined for a plain filter. */
export function parseShared(filter: string): { group: string; filter: string } | undefined {
  if (!filter.startsWith('$share/')) return undefined;
  const rest = filter.slice('$share/'.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  return { group: rest.slice(0, slash), filter: rest.slice(slash + 1) };
}

/**
 * The sessions of one shared subscription `$share/{group}/{filter}` (MQTT 5 4.8.2): each message
 * goes to one of them, round robin, a connected member before a detached one.
 */
export class SharedGroup {
  readonly members = new Map<Session, SubscriptionOptions>();
  private turn = 0;

  constructor(
    /** The whole `$share/...` filter, as the clients subscribed to it. */
    readonly key: string,
    readonly filter: string,
  ) {}

  /** A member for a message on `topic`: never one whose ACL denies it that topic (Session.readDenied). */
  pick(topic: string): [Session, SubscriptionOptions] | undefined {
    let list = [...this.members];
    if (list.some(([s]) => s.readDenied)) list = list.filter(([s]) => !s.readDenied || !deniesTopic(s.readDenied, topic));
    if (list.length === 0) return undefined;
    for (let i = 0; i < list.length; i++) {
      const candidate = list[(this.turn + i) % list.length]!;
      if (candidate[0].outlet) {
        this.turn = (this.turn + i + 1) % list.length;
        return candidate;
      }
    }
    const any = list[this.turn % list.length]!;
    this.turn = (this.turn + 1) % list.length;
    return any;
  }
}

type Subscriber = Session | SharedGroup;

/** Everything one tenant's devices share: and nothing they share with any other tenant. */
export class TenantSpace {
  readonly subscriptions = new SubscriptionTree<Subscriber, SubscriptionOptions>();
  readonly retained = new RetainedTree<Message>();
  readonly sessions = new Map<string, Session>();
  /** Shared subscriptions by their whole `$share/...` filter. */
  readonly shared = new Map<string, SharedGroup>();
  /** Sessions with a subscription, and those of them that were kept beyond their connection then. */
  private subscribed = 0;
  private storedSubscribed = 0;
  /** The interest last told to the owner. */
  private told: Interest = 0;

  constructor(
    readonly tenantId: string,
    readonly limits: BrokerLimits,
    readonly stats: BrokerStats,
    private readonly events: BrokerEvents = {},
    private readonly directory?: SharedDirectory,
  ) {}

  /**
   * This tenant's interest in messages from other processes. A session counts as kept beyond its
   * connection from its first subscription on (a shorter expiry set later keeps it counted: more
   * is waited for, never less).
   */
  get interest(): Interest {
    return this.subscribed === 0 ? 0 : this.storedSubscribed > 0 ? 2 : 1;
  }

  /** Counts a session in or out of the interest after its subscriptions changed. */
  private countInterest(session: Session): void {
    if (session.subscriptions.size > 0 && !session.interested) {
      session.interested = session.expiryMs > 0 || session.stored ? 'stored' : 'live';
      this.subscribed++;
      if (session.interested === 'stored') this.storedSubscribed++;
    } else if (session.subscriptions.size === 0 && session.interested) {
      this.subscribed--;
      if (session.interested === 'stored') this.storedSubscribed--;
      session.interested = undefined;
    } else return;
    const level = this.interest;
    if (level === this.told) return;
    this.told = level;
    this.events.interest?.(this.tenantId, level);
  }

  /** A session's state changed (see `Session.touch`). */
  changed(session: Session): void {
    this.events.sessionChanged?.(session);
  }

  dropped(reason: DropReason): void {
    this.stats.messagesDropped++;
    this.stats.dropped[reason]++;
    this.events.dropped?.(this.tenantId, reason);
  }

  /**
   * A message published by a client of this broker: routed here and announced to the owner. With
   * several processes, each shared subscription it matches is given to one process, in turn.
   */
  publish(message: Message, from?: Session): void {
    const groups = this.directory?.groups.get(this.tenantId);
    if (groups?.size) {
      let to: Record<string, number> | undefined;
      for (const [key, g] of groups) {
        if (g.processes.length === 0 || !topicMatches(g.filter, message.topic)) continue;
        (to ??= {})[key] = g.processes[g.turn++ % g.processes.length]!;
      }
      if (to) message = { ...message, sharedTo: to };
    }
    this.route(message, from, true);
    this.events.published?.(this.tenantId, message);
  }

  /**
   * Routes a message to every matching subscription of this tenant; `from` is the publishing
   * session (for no-local). Overlapping subscriptions of one session yield one copy at the highest
   * granted QoS, carrying every matching subscription identifier (MQTT 5 3.3.4). A shared
   * subscription adds one copy for one of its members.
   */
  route(message: Message, from?: Session, local = false): void {
    if (message.retain) this.retain(message, local);
    const matches = new Map<Session, Match>();
    let groups: SharedGroup[] | undefined;
    this.subscriptions.match(message.topic, (subscriber, opts) => {
      if (subscriber instanceof SharedGroup) {
        (groups ??= []).push(subscriber);
        return;
      }
      const m = matches.get(subscriber);
      if (!m) {
        matches.set(subscriber, {
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
      const qos = Math.min(message.qos, m.qos) as QoS;
      // Without retain-as-published the RETAIN flag is cleared on normal forwarding (MQTT 3.3.1.3).
      session.deliver(message, qos, m.retainAsPublished && message.retain, m.ids);
    }
    for (const group of groups ?? []) {
      if (this.directory) {
        // Another process's turn for this group; a group the publishing process did not know of
        // yet is served where the message was published.
        const target = message.sharedTo?.[group.key];
        if (target === undefined ? !local : target !== this.directory.self) continue;
      }
      const picked = group.pick(message.topic);
      if (!picked) continue;
      const [session, opts] = picked;
      const ids = opts.subscriptionId !== undefined ? [opts.subscriptionId] : undefined;
      session.deliver(message, Math.min(message.qos, opts.qos) as QoS, opts.retainAsPublished && message.retain, ids);
    }
  }

  /**
   * MQTT 3.3.1.3: a retained message with an empty payload removes the retained message. `local`:
   * published by a client of this broker (announced to the owner), not relayed from another process.
   */
  retain(message: Message, local = true): void {
    if (message.payload.length === 0) {
      if (this.retained.delete(message.topic) && local) this.events.retained?.(this.tenantId, message.topic, undefined);
      return;
    }
    if (this.retained.size >= this.limits.maxRetainedPerTenant && this.retained.get(message.topic) === undefined) {
      this.dropped('retained_full');
      return;
    }
    // Stored with QoS and properties as published; the stored copy is always flagged retained.
    const { sharedTo: _, ...stored } = { ...message, retain: true };
    this.retained.set(message.topic, stored);
    if (local) this.events.retained?.(this.tenantId, message.topic, stored);
  }

  /**
   * Adds or replaces a subscription and sends the matching retained messages as the Retain
   * Handling option asks (MQTT 5 3.8.3.1; MQTT 3.1.1 always sends them). A shared subscription
   * gets no retained messages (MQTT 5 4.8.2).
   */
  subscribe(session: Session, filter: string, opts: SubscriptionOptions): void {
    const shared = parseShared(filter);
    if (shared) {
      let group = this.shared.get(filter);
      if (!group) {
        group = new SharedGroup(filter, shared.filter);
        this.shared.set(filter, group);
        this.subscriptions.add(shared.filter, group, opts);
        this.events.sharedGroup?.(this.tenantId, filter, shared.filter, true);
      }
      group.members.set(session, opts);
      session.subscriptions.set(filter, opts);
      this.countInterest(session);
      session.touch();
      return;
    }
    const isNew = this.subscriptions.add(filter, session, opts);
    session.subscriptions.set(filter, opts);
    this.countInterest(session);
    session.touch();
    if (opts.retainHandling === 2 || (opts.retainHandling === 1 && !isNew)) return;
    const now = Date.now();
    const ids = opts.subscriptionId !== undefined ? [opts.subscriptionId] : undefined;
    this.retained.match(filter, (m) => {
      if (expired(m, now)) {
        this.retained.delete(m.topic);
        this.events.retained?.(this.tenantId, m.topic, undefined, true);
        return;
      }
      session.deliver(m, Math.min(m.qos, opts.qos) as QoS, true, ids);
    });
  }

  unsubscribe(session: Session, filter: string): boolean {
    if (session.subscriptions.delete(filter)) {
      this.countInterest(session);
      session.touch();
    }
    const group = this.shared.get(filter);
    if (group) {
      if (!group.members.delete(session)) return false;
      if (group.members.size === 0) {
        this.shared.delete(filter);
        this.subscriptions.remove(group.filter, group);
        this.events.sharedGroup?.(this.tenantId, filter, group.filter, false);
      }
      return true;
    }
    return this.subscriptions.remove(filter, session);
  }

  /**
   * Existing session for a client id, or a fresh one; the old one is dropped when `clean` (its
   * will, if one is waiting, goes out now: its session ended, MQTT 5 3.1.3.2.2).
   */
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
      this.endSession(existing, { publishWill: existing.deviceId === deviceId });
    }
    const session = new Session(this, clientId, deviceId);
    this.sessions.set(clientId, session);
    return { session, present: false };
  }

  /**
   * Ends a session for good: its subscriptions and queued messages are dropped, and so is a will
   * waiting out its delay, unless `publishWill` (the session ended in the normal way, so the will
   * is due now: MQTT 5 3.1.3.2.2, "or the Session ends, whichever happens first"). `moved`: the
   * session goes on in another process, which keeps its stored row.
   */
  endSession(session: Session, opts: { publishWill?: boolean; moved?: boolean } = {}): void {
    if (session.expiryTimer) clearTimeout(session.expiryTimer);
    session.expiryTimer = undefined;
    const will = session.pendingWill;
    session.pendingWill = undefined;
    if (session.willTimer) clearTimeout(session.willTimer);
    session.willTimer = undefined;
    session.quiet = true; // nothing more to write for it: it is deleted, or kept as it is
    for (const filter of [...session.subscriptions.keys()]) this.unsubscribe(session, filter);
    if (session.stored && !opts.moved) {
      session.stored = false;
      this.events.sessionDeleted?.(session);
    }
    if (this.sessions.get(session.clientId) === session) {
      this.sessions.delete(session.clientId);
      this.events.sessionEnded?.(session);
    }
    if (opts.publishWill && will) this.publish(will, session);
  }

  /**
   * Publishes a will after `delayMs` (MQTT 5 Will Delay Interval), unless the client is back on
   * the session by then or the session ends without it.
   */
  scheduleWill(session: Session, will: Message, delayMs: number): void {
    if (delayMs <= 0) {
      this.publish(will, session);
      return;
    }
    clearTimeout(session.willTimer);
    session.pendingWill = will;
    session.willTimer = setTimeout(() => {
      session.willTimer = undefined;
      session.pendingWill = undefined;
      if (!session.outlet) this.publish(will, session);
    }, delayMs);
    session.willTimer.unref();
  }

  /**
   * Ends a detached session here and returns its state for another process, where its client
   * has come back: its will is not published (MQTT 5 3.1.3.2.2, the client is back in time).
   */
  handOver(session: Session): SessionState {
    const state = session.state();
    this.endSession(session, { moved: true });
    return state;
  }

  /**
   * A session handed over by another process, kept detached until its client's CONNECT attaches
   * it (or it expires). Returns undefined when this tenant already has a session for the client id.
   */
  adopt(state: SessionState): Session | undefined {
    if (this.sessions.has(state.clientId)) return undefined;
    const session = new Session(this, state.clientId, state.deviceId);
    // Stored already (or handed over with its row): set up again without writing it again.
    session.quiet = true;
    session.restore(state);
    for (const [filter, opts] of state.subscriptions) this.subscribe(session, filter, { ...opts, retainHandling: 2 });
    for (const [filter, opts] of state.subscriptions) session.subscriptions.set(filter, opts);
    this.sessions.set(state.clientId, session);
    this.releaseSession(session);
    session.quiet = false;
    return session;
  }

  /** After its connection closed: ended now, or kept until it expires. */
  releaseSession(session: Session): void {
    if (session.outlet) return;
    if (session.expiryMs <= 0) {
      this.endSession(session, { publishWill: true });
      return;
    }
    if (session.expiryTimer) clearTimeout(session.expiryTimer);
    session.expiresAt = Date.now() + session.expiryMs;
    session.touch();
    session.expiryTimer = setTimeout(() => {
      if (!session.outlet) this.endSession(session, { publishWill: true });
    }, Math.min(session.expiryMs, 2 ** 31 - 1));
    session.expiryTimer.unref();
  }

  get isEmpty(): boolean {
    return this.sessions.size === 0 && this.retained.size === 0;
  }
}

/** Tenant spaces by tenant id, made on first use. */
export class Broker {
  readonly stats: BrokerStats = newBrokerStats();
  private readonly spaces = new Map<string, TenantSpace>();

  constructor(
    readonly limits: BrokerLimits = DEFAULT_LIMITS,
    private readonly events: BrokerEvents = {},
    /** Set when this broker is one of several processes (mqtt-cluster.ts). */
    readonly directory?: SharedDirectory,
  ) {}

  /** Another process says which processes have members of a shared subscription now. */
  setSharedProcesses(tenantId: string, key: string, filter: string, processes: number[]): void {
    if (!this.directory) return;
    let groups = this.directory.groups.get(tenantId);
    if (processes.length === 0) {
      groups?.delete(key);
      if (groups?.size === 0) this.directory.groups.delete(tenantId);
      return;
    }
    if (!groups) this.directory.groups.set(tenantId, (groups = new Map()));
    const g = groups.get(key);
    if (g) g.processes = processes;
    else groups.set(key, { filter, processes, turn: 0 });
  }

  space(tenantId: string): TenantSpace {
    let s = this.spaces.get(tenantId);
    if (!s) {
      s = new TenantSpace(tenantId, this.limits, this.stats, this.events, this.directory);
      this.spaces.set(tenantId, s);
    }
    return s;
  }

  peek(tenantId: string): TenantSpace | undefined {
    return this.spaces.get(tenantId);
  }

  /** Ends every session of a device (or of the whole tenant) that is kept detached; no will goes out. */
  endDetachedSessions(tenantId: string, deviceId?: string): void {
    const s = this.spaces.get(tenantId);
    if (!s) return;
    for (const session of [...s.sessions.values()]) {
      if (!session.outlet && (deviceId === undefined || session.deviceId === deviceId)) s.endSession(session);
    }
  }

  /**
   * Forgets a tenant entirely (it was deleted): sessions, subscriptions, queued and in-flight
   * messages, wills waiting out their delay and retained messages. Its connections must be closed
   * first; a tenant made again with the same id starts from an empty space.
   */
  dropTenant(tenantId: string): boolean {
    const s = this.spaces.get(tenantId);
    if (!s) return false;
    for (const session of [...s.sessions.values()]) s.endSession(session);
    this.spaces.delete(tenantId);
    return true;
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

  /** The tenants this broker keeps anything for (sessions, retained messages). */
  tenantIds(): string[] {
    return [...this.spaces.keys()];
  }

  get tenantCount(): number {
    return this.spaces.size;
  }

  close(): void {
    for (const s of this.spaces.values()) {
      for (const session of [...s.sessions.values()]) s.endSession(session);
    }
    this.spaces.clear();
  }
}
