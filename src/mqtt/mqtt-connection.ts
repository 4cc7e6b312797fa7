/**
 * One client connection speaking MQTT 3.1, 3.1.1 or 5 (mqtt-packet does the wire format): framing
 * with a packet size limit, the CONNECT handshake around an authentication hook, keep-alive,
 * PUBLISH/SUBSCRIBE with the ACL the verifier returned, and closing with or without the will.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import * as mqttPacket from 'mqtt-packet';
import type {
  IConnectPacket,
  IDisconnectPacket,
  IPublishPacket,
  ISubscribePacket,
  IUnsubscribePacket,
  Packet,
} from 'mqtt-packet';
import type { Logger } from 'pino';
import type { AclRule } from '../verifier/verifier-types.js';
import { parseShared, type Broker, type ForwardedProperties, type Message, type Outlet, type OutgoingPublish, type QoS, type Session, type TenantSpace } from './broker.js';
import type { Durability } from './durable-store.js';
import { isSharedSubscription, isValidTopicFilter, isValidTopicName, mayPublish, maySubscribe, readDenied } from './topics.js';

/** MQTT 5 reason codes used here (MQTT 5 2.4). */
export const RC5 = {
  success: 0x00,
  noSubscriptionExisted: 0x11,
  grantedQos1: 0x01,
  grantedQos2: 0x02,
  disconnectWithWill: 0x04,
  unspecified: 0x80,
  malformed: 0x81,
  protocolError: 0x82,
  unsupportedProtocolVersion: 0x84,
  clientIdNotValid: 0x85,
  notAuthorized: 0x87,
  serverUnavailable: 0x88,
  serverShuttingDown: 0x8b,
  badAuthenticationMethod: 0x8c,
  keepAliveTimeout: 0x8d,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  topicNameInvalid: 0x90,
  packetIdentifierNotFound: 0x92,
  receiveMaximumExceeded: 0x93,
  topicAliasInvalid: 0x94,
  packetTooLarge: 0x95,
  messageRateTooHigh: 0x96,
  quotaExceeded: 0x97,
  administrativeAction: 0x98,
  sharedSubscriptionsNotSupported: 0x9e,
} as const;

/** Limits of the listener that a client can run into; each is counted when hit. */
export type LimitName =
  | 'connections'
  | 'tenant_connections'
  | 'packet_size'
  | 'receive_maximum'
  | 'subscriptions'
  | 'publish_rate'
  | 'topic_alias';

/** MQTT 3.1.1 CONNACK return codes (MQTT 3.1.1 3.2.2.3). */
export const RC3 = {
  accepted: 0,
  unacceptableProtocol: 1,
  identifierRejected: 2,
  serverUnavailable: 3,
  notAuthorized: 5,
} as const;

export type AuthOutcome =
  | { ok: true; tenantId: string; deviceId: string; deviceName: string; acl: AclRule[] }
  | { ok: false; code: 'not-authorized' | 'server-unavailable' };

export interface ConnectionHooks {
  /** Decides on a CONNECT. Never rejects: failures come back as `server-unavailable`. */
  authenticate(conn: MqttConnection, connect: IConnectPacket): Promise<AuthOutcome>;
  /** The CONNACK accepted the client. */
  established(conn: MqttConnection): void;
  /** The connection is gone (called once, whatever the state it reached). */
  closed(conn: MqttConnection): void;
  /** A publication (or will) the ACL refused. */
  publishDenied?(conn: MqttConnection, topic: string): void;
  /** The client ran into one of the listener's limits. */
  limitHit?(conn: MqttConnection, limit: LimitName): void;
  /**
   * May the tenant take one more connection? Asked once the verifier allowed the device; answers
   * the limit that refuses it, if any.
   */
  admitTenant?(conn: MqttConnection, tenantId: string): LimitName | undefined;
}

export interface ConnectionOptions {
  /** Largest packet accepted from a client, fixed header included (MQTT 5 Maximum Packet Size). */
  maxPacketSize: number;
  /** A client that has not sent a complete CONNECT by then is cut off. */
  connectTimeoutMs: number;
  /** QoS 2 publications from the client awaiting PUBREL at once (our Receive Maximum). */
  receiveMaximum: number;
  /** QoS 1 and 2 messages sent to a client and not yet acknowledged (mosquitto's max_inflight_messages). */
  maxInflight: number;
  /** Topic aliases a client may set (our Topic Alias Maximum, MQTT 5 3.2.2.3.8); 0 refuses them. */
  topicAliasMaximum: number;
  /** Longest keep alive granted; a client asking more (or none) gets this as Server Keep Alive. 0: any. */
  maxKeepAliveSeconds: number;
  /** Subscriptions one session may hold; further ones are refused with quota exceeded. 0: no limit. */
  maxSubscriptionsPerClient: number;
  /** PUBLISH packets per second one connection may send on average (bursts of as many). 0: no limit. */
  publishRatePerSecond: number;
  /** Upper bound for session expiry; MQTT 3.1.1 persistent sessions get exactly this. */
  maxSessionExpirySeconds: number;
  /** QoS 0 messages are dropped for a client whose socket has this much unsent. */
  maxOutboundBufferBytes: number;
  /**
   * Where sessions and retained messages are stored: an acknowledgement of a packet that changed
   * stored state waits until the change is committed (durable-store.ts).
   */
  durable?: Durability;
  /**
   * Other listener processes learn of a tenant's first subscription here before its SUBACK
   * (through `durable`, which then counts the announcement as a change to wait for).
   */
  announcesInterest?: boolean;
}

export interface ConnectionStats {
  protocolErrors: number;
  connectTimeouts: number;
  keepaliveTimeouts: number;
  publishReceived: number;
  publishDenied: number;
  publishSent: number;
  subscribeDenied: number;
}

type State = 'awaiting-connect' | 'authenticating' | 'connected' | 'closed';

export type CloseReason =
  | 'client-disconnect'
  | 'socket-closed'
  | 'protocol-error'
  | 'connect-timeout'
  | 'keepalive-timeout'
  | 'refused'
  | 'takeover'
  | 'kill-switch'
  | 'store-failed'
  | 'shutdown';

interface CloseOptions {
  /** Sent as DISCONNECT to an MQTT 5 client that was accepted. */
  reasonCode?: number;
  /** Publish the will (MQTT 3.1.2.5: on any close that is not a DISCONNECT from the client). */
  will: boolean;
  /** End the session even if it would be kept (the device is no longer trusted). */
  endSession?: boolean;
}

/** Properties that an MQTT 5 PUBLISH carries from publisher to subscriber. */
function forwardedProperties(p: IPublishPacket['properties']): ForwardedProperties | undefined {
  if (!p) return undefined;
  const out: ForwardedProperties = {};
  if (p.payloadFormatIndicator !== undefined) out.payloadFormatIndicator = p.payloadFormatIndicator;
  if (p.contentType !== undefined) out.contentType = p.contentType;
  if (p.responseTopic !== undefined) out.responseTopic = p.responseTopic;
  if (p.correlationData !== undefined) out.correlationData = p.correlationData;
  if (p.userProperties !== undefined) out.userProperties = p.userProperties;
  return Object.keys(out).length ? out : undefined;
}

/**
 * Payloads come out of the parser as views into the socket's read buffer. A message that
 * outlives the read (retained, queued for an offline session, a will) would pin that whole
 * buffer, so a view into a much larger buffer is copied.
 */
function ownBuffer(payload: Buffer | string): Buffer {
  if (typeof payload === 'string') return Buffer.from(payload);
  return payload.buffer.byteLength > payload.length * 2 + 256 ? Buffer.from(payload) : payload;
}

/**
 * Publications handled per event-loop turn. A turn takes up to TURN_PUBLISHES PUBLISH packets from
 * its connections freely; past that, a connection that has handed the broker PUBLISH_PER_TURN in
 * this turn is paused, and the rest of what it sent waits for the next turn, after every other
 * connection had its turn. A flood from many publishers then costs a turn a bounded amount of
 * work, and a subscriber's acknowledgements are read and its next messages in flight sent every
 * turn, instead of once per turn that took in every publisher's whole backlog; a lone busy
 * publisher (fan-out) still hands over its whole batch each turn. Other packets are not counted:
 * acknowledgements only free messages in flight, and holding them back would slow delivery.
 * mosquitto bounds a wake-up likewise, handling what one TLS record of a socket holds before the
 * next socket (src/mux_epoll.c, loop_handle_reads_writes: `packet__read` while `SSL_DATA_PENDING`).
 */
export const PUBLISH_PER_TURN = 1;
export const TURN_PUBLISHES = 20;

/** PUBLISH packets handled in this turn by every connection together. */
let turnPublishes = 0;
let turnEnd: NodeJS.Immediate | undefined;
const endTurn = (): void => {
  turnEnd = undefined;
  turnPublishes = 0;
};

/** Connections with packets left over from this turn, continued in the next (one immediate for all). */
let continued: MqttConnection[] = [];
let continuing: NodeJS.Immediate | undefined;
function continueLater(conn: MqttConnection): void {
  continued.push(conn);
  continuing ??= setImmediate(() => {
    const now = continued;
    continued = [];
    continuing = undefined;
    for (const c of now) c.continueInput();
  });
}

export class MqttConnection implements Outlet {
  state: State = 'awaiting-connect';
  /** MQTT protocol level from CONNECT: 3 (3.1), 4 (3.1.1) or 5. */
  version: 3 | 4 | 5 = 4;
  clientId = '';
  username: string | undefined;
  tenantId: string | undefined;
  deviceId: string | undefined;
  deviceName: string | undefined;
  acl: AclRule[] = [];
  session: Session | undefined;
  receiveMaximum = 65535;
  readonly connectedAt = new Date();
  /** Anything the owner wants to keep with the connection (the listener keeps its session index keys). */
  attachment: unknown;

  private readonly parser = mqttPacket.parser();
  private parsed: Packet | undefined;
  private parseError: Error | undefined;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private holding = false;
  private connectTimer: NodeJS.Timeout | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private will: Message | undefined;
  private willDelayMs = 0;
  private clientMaxPacketSize = Infinity;
  /** The client's Topic Alias Maximum: aliases this listener may set towards it (MQTT 5 3.1.2.11.5). */
  private clientAliasMaximum = 0;
  /** Aliases set towards the client, by topic; the first topics sent take them, for the connection's life. */
  private readonly outAliases = new Map<string, number>();
  private space: TenantSpace | undefined;
  /** The frame being handled: strings are checked against its bytes for ill-formed UTF-8. */
  private frame: Buffer | undefined;
  /** Topic aliases the client set (MQTT 5 3.3.2.3.4). */
  private readonly aliases = new Map<number, string>();
  /** Publish rate limiter: tokens left and when they were last counted. */
  private tokens = 0;
  private tokensAt = 0;
  /** The durable store's change count when the packet being handled arrived. */
  private mark = 0;
  /** Acknowledgements waiting for the store (they go out in order), and how many wait. */
  private replies: Promise<void> | undefined;
  private repliesWaiting = 0;
  /** The socket is corked until the end of the current handler (see `send`). */
  private corked = false;
  /** PUBLISH packets handled since this turn's input began (see PUBLISH_PER_TURN). */
  private publishesThisTurn = 0;
  /** Input paused until the next turn, with packets pending. */
  private yielding = false;

  constructor(
    readonly socket: Socket,
    private readonly broker: Broker,
    private readonly hooks: ConnectionHooks,
    private readonly opts: ConnectionOptions,
    private readonly stats: ConnectionStats,
    private readonly log: Logger,
  ) {
    this.parser.on('packet', (p: Packet) => {
      this.parsed = p;
    });
    this.parser.on('error', (err: Error) => {
      this.parseError = err;
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.terminate('socket-closed', { will: true }));
    socket.on('close', () => this.terminate('socket-closed', { will: true }));
    this.connectTimer = setTimeout(() => {
      this.stats.connectTimeouts++;
      this.log.debug({ remote: socket.remoteAddress }, 'no CONNECT in time; connection closed');
      this.terminate('connect-timeout', { will: false });
    }, opts.connectTimeoutMs);
    this.connectTimer.unref();
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  // ------------------------------------------------------------------------------------------
  // Framing: the fixed header's Remaining Length (MQTT 2.2.3) tells where a packet ends, so an
  // oversized packet is refused before it is buffered.

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    // Data a paused socket still delivers waits behind what is pending, for the next turn.
    if (this.yielding) return;
    this.publishesThisTurn = 0;
    this.drain();
  }

  /** The next turn of a connection that had packets left over (see PUBLISH_PER_TURN). */
  continueInput(): void {
    this.yielding = false;
    if (this.state === 'closed') return;
    this.publishesThisTurn = 0;
    this.drain();
    if (!this.yielding && !this.holding && !this.closed) this.socket.resume();
  }

  private drain(): void {
    while (!this.holding && this.state !== 'closed' && this.pendingBytes >= 2) {
      if (this.publishesThisTurn >= PUBLISH_PER_TURN && turnPublishes >= TURN_PUBLISHES) {
        this.yielding = true;
        this.socket.pause();
        continueLater(this);
        return;
      }
      const head = this.pending.length === 1 ? this.pending[0]! : this.peek(5);
      let remaining = 0;
      let multiplier = 1;
      let i = 1;
      let complete = false;
      for (; i < head.length && i <= 4; i++) {
        const b = head[i]!;
        remaining += (b & 0x7f) * multiplier;
        multiplier *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        if (i > 4) return this.protocolError('malformed remaining length', RC5.malformed);
        return; // header not complete yet
      }
      const total = i + 1 + remaining;
      if (total > this.opts.maxPacketSize) {
        this.hooks.limitHit?.(this, 'packet_size');
        return this.protocolError(`packet of ${total} bytes exceeds the limit of ${this.opts.maxPacketSize}`, RC5.packetTooLarge);
      }
      if (this.pendingBytes < total) return;
      const frame = this.take(total);
      this.parsed = undefined;
      this.parser.parse(frame);
      if (this.parseError) {
        const err = this.parseError;
        this.parseError = undefined;
        return this.onParseError(err);
      }
      const packet = this.parsed as Packet | undefined;
      if (packet?.cmd === 'publish') {
        this.publishesThisTurn++;
        turnPublishes++;
        turnEnd ??= setImmediate(endTurn);
      }
      this.frame = frame;
      try {
        if (packet) this.handle(packet);
      } finally {
        this.frame = undefined;
      }
    }
  }

  /**
   * Is `s`, decoded from the frame being handled, a well-formed UTF-8 string without U+0000
   * ([MQTT-1.5.4-1], [MQTT-1.5.4-2]; MQTT 3.1.1 [MQTT-1.5.3-1], [MQTT-1.5.3-2])? The parser
   * decodes ill-formed sequences (surrogates included) to U+FFFD, so a string holding U+FFFD is
   * well formed only if its UTF-8 encoding is in the frame as such.
   */
  private wellFormed(s: string): boolean {
    if (s.includes('\u0000')) return false;
    if (!s.includes('\ufffd')) return true;
    return this.frame !== undefined && this.frame.indexOf(Buffer.from(s, 'utf8')) !== -1;
  }

  /** The first `n` pending bytes (or fewer), without consuming them. */
  private peek(n: number): Buffer {
    const parts: Buffer[] = [];
    let got = 0;
    for (const b of this.pending) {
      parts.push(b);
      got += b.length;
      if (got >= n) break;
    }
    return Buffer.concat(parts, Math.min(got, n));
  }

  private take(n: number): Buffer {
    let out: Buffer;
    const first = this.pending[0]!;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.pending.shift();
      else this.pending[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const b = this.pending[0]!;
        const k = Math.min(b.length, n - off);
        b.copy(out, off, 0, k);
        off += k;
        if (k === b.length) this.pending.shift();
        else this.pending[0] = b.subarray(k);
      }
    }
    this.pendingBytes -= n;
    return out;
  }

  private onParseError(err: Error): void {
    if (this.state === 'awaiting-connect' && /protocol version/i.test(err.message)) {
      // MQTT 3.1.1 3.1.2.2: answer an unknown protocol level with return code 1, then close.
      this.socket.write(Buffer.from([0x20, 0x02, 0x00, RC3.unacceptableProtocol]));
      this.stats.protocolErrors++;
      this.terminate('refused', { will: false });
      return;
    }
    this.protocolError(err.message, RC5.malformed);
  }

  private protocolError(message: string, reasonCode: number = RC5.protocolError): void {
    this.stats.protocolErrors++;
    this.log.debug({ clientId: this.clientId || undefined, tenantId: this.tenantId, err: message }, 'MQTT protocol error; connection closed');
    this.terminate('protocol-error', { will: true, reasonCode });
  }

  // ------------------------------------------------------------------------------------------

  private handle(packet: Packet): void {
    if (this.keepaliveTimer) this.keepaliveTimer.refresh();
    if (this.opts.durable) this.mark = this.opts.durable.changes;
    if (this.state === 'awaiting-connect') {
      // MQTT 3.1.0-1: the first packet must be CONNECT.
      if (packet.cmd !== 'connect') return this.protocolError(`first packet was ${packet.cmd}, not CONNECT`);
      void this.onConnect(packet);
      return;
    }
    switch (packet.cmd) {
      case 'publish':
        return this.onPublish(packet);
      case 'puback':
        if (packet.messageId !== undefined) this.session?.acknowledge(packet.messageId);
        return;
      case 'pubrel': {
        // MQTT 4.3.3 (method B): the message was routed on PUBLISH; PUBREL frees its identifier
        // ([MQTT-4.3.3-10]: PUBCOMP with the same identifier).
        const known = packet.messageId !== undefined && this.session!.inboundQos2.delete(packet.messageId);
        if (known) this.session!.touch();
        this.reply({
          cmd: 'pubcomp',
          messageId: packet.messageId!,
          ...(this.version === 5 && !known ? { reasonCode: RC5.packetIdentifierNotFound } : {}),
        });
        return;
      }
      case 'pubrec': {
        const id = packet.messageId!;
        if (!this.session!.received(id, packet.reasonCode ?? 0) && (packet.reasonCode ?? 0) < 0x80) {
          // A PUBREC for nothing in flight still gets its PUBREL (MQTT 5: with reason 0x92).
          this.reply({ cmd: 'pubrel', messageId: id, ...(this.version === 5 ? { reasonCode: RC5.packetIdentifierNotFound } : {}) });
        }
        return;
      }
      case 'pubcomp':
        if (packet.messageId !== undefined) this.session?.completed(packet.messageId);
        return;
      case 'subscribe':
        return this.onSubscribe(packet);
      case 'unsubscribe':
        return this.onUnsubscribe(packet);
      case 'pingreq':
        this.write({ cmd: 'pingresp' });
        return;
      case 'disconnect':
        return this.onDisconnect(packet);
      case 'connect':
        return this.protocolError('second CONNECT'); // MQTT 3.1.0-2
      default:
        return this.protocolError(`unexpected ${packet.cmd}`);
    }
  }

  private async onConnect(packet: IConnectPacket): Promise<void> {
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.state = 'authenticating';
    // Hold further packets (and stop reading) until the verifier has decided.
    this.holding = true;
    this.socket.pause();
    this.version = (packet.protocolVersion ?? 4) as 3 | 4 | 5;
    this.username = packet.username;
    const props = packet.properties;

    // Strings must be well-formed UTF-8 without U+0000 ([MQTT-1.5.4-1/2], 3.1.1 [MQTT-1.5.3-1/2]).
    const badClientId = packet.clientId !== undefined && !this.wellFormed(packet.clientId);
    const badStrings =
      (packet.username !== undefined && !this.wellFormed(packet.username)) ||
      (packet.will !== undefined && !this.wellFormed(packet.will.topic));
    if (badClientId) return this.refuse(RC5.clientIdNotValid, RC3.identifierRejected);
    // MQTT 3.1.1 has no CONNACK code for a malformed CONNECT: the connection is just closed.
    if (badStrings) return this.version === 5 ? this.refuse(RC5.malformed, 0) : this.protocolError('ill-formed UTF-8 in CONNECT');
    // The will's topic is checked before anything is done with the session, so a refused
    // CONNECT never takes over a live session.
    if (packet.will && !isValidTopicName(packet.will.topic)) {
      return this.version === 5 ? this.refuse(RC5.topicNameInvalid, 0) : this.protocolError('invalid will topic');
    }
    if (this.version === 5 && props?.authenticationMethod !== undefined) {
      // Enhanced authentication (MQTT 5 4.12) is not offered: identity comes from the certificate.
      return this.refuse(RC5.badAuthenticationMethod, RC3.notAuthorized);
    }
    let assigned: string | undefined;
    let clientId = packet.clientId ?? '';
    if (clientId === '') {
      // MQTT 3.1.1 3.1.3-7/8: an empty client id is only allowed with a clean session.
      if (this.version === 3 || (this.version === 4 && packet.clean === false)) {
        return this.refuse(RC5.clientIdNotValid, RC3.identifierRejected);
      }
      assigned = `auto-${randomBytes(12).toString('hex')}`;
    }

    const outcome = await this.hooks.authenticate(this, packet);
    // The socket may have gone (or the listener closed) while the verifier decided.
    if (this.closed) return;
    if (!outcome.ok) {
      return outcome.code === 'not-authorized'
        ? this.refuse(RC5.notAuthorized, RC3.notAuthorized)
        : this.refuse(RC5.serverUnavailable, RC3.serverUnavailable);
    }
    const full = this.hooks.admitTenant?.(this, outcome.tenantId);
    if (full) {
      this.hooks.limitHit?.(this, full);
      return this.refuse(RC5.quotaExceeded, RC3.serverUnavailable);
    }

    clientId = assigned ?? clientId;
    this.clientId = clientId;
    this.tenantId = outcome.tenantId;
    this.deviceId = outcome.deviceId;
    this.deviceName = outcome.deviceName;
    this.acl = outcome.acl;
    if (this.version === 5) {
      // MQTT 5 3.1.2.11.3: never more than the client's Receive Maximum in flight; the
      // listener's own in-flight limit can only lower it.
      this.receiveMaximum = Math.max(1, Math.min(props?.receiveMaximum ?? 65535, this.opts.maxInflight));
      if (props?.maximumPacketSize) this.clientMaxPacketSize = props.maximumPacketSize;
      this.clientAliasMaximum = props?.topicAliasMaximum ?? 0;
    } else {
      this.receiveMaximum = Math.max(1, this.opts.maxInflight);
    }

    const space = this.broker.space(outcome.tenantId);
    this.space = space;
    // MQTT 3.1.4-2: a second connection with the same client id (within the tenant) takes over.
    const previous = space.sessions.get(clientId)?.outlet;
    if (previous instanceof MqttConnection && previous !== this) {
      previous.terminate('takeover', { will: true, reasonCode: RC5.sessionTakenOver });
    }
    const clean = packet.clean !== false;
    const { session, present } = space.openSession(clientId, outcome.deviceId, clean);
    this.session = session;
    session.readDenied = readDenied(this.acl);
    const maxExpiry = this.opts.maxSessionExpirySeconds;
    if (this.version === 5) {
      session.expiryMs = Math.min(props?.sessionExpiryInterval ?? 0, maxExpiry) * 1000;
    } else {
      session.expiryMs = clean ? 0 : maxExpiry * 1000;
    }
    if (present) {
      // The ACL may have changed since the session was made: keep only what is still allowed.
      for (const filter of [...session.subscriptions.keys()]) {
        if (!maySubscribe(this.acl, filter)) space.unsubscribe(session, filter);
      }
    }

    if (packet.will) {
      // Validated above, before the session was touched.
      const w = packet.will;
      this.will = {
        topic: w.topic,
        payload: ownBuffer(w.payload),
        qos: (w.qos ?? 0) as 0 | 1 | 2,
        retain: !!w.retain,
        ...(forwardedProperties(w.properties) ? { properties: forwardedProperties(w.properties) } : {}),
      };
      if (w.properties?.messageExpiryInterval !== undefined) {
        this.will.expiresAt = Date.now() + w.properties.messageExpiryInterval * 1000;
      }
      this.willDelayMs = (w.properties?.willDelayInterval ?? 0) * 1000;
    }

    // Server Keep Alive (MQTT 5 3.2.2.3.14): a client asking for more than the listener grants
    // (or for none) is told the value it must use. MQTT 3.1.1 has no way to say it, so its
    // keep alive is bounded silently.
    let keepalive = packet.keepalive ?? 0;
    const maxKeepAlive = this.opts.maxKeepAliveSeconds;
    const serverKeepAlive = maxKeepAlive > 0 && (keepalive === 0 || keepalive > maxKeepAlive) ? maxKeepAlive : undefined;
    if (serverKeepAlive !== undefined && this.version === 5) keepalive = serverKeepAlive;

    // No Maximum QoS property: QoS 2 is supported ([MQTT-3.2.2-9], absent means 2).
    const connack: Packet = { cmd: 'connack', sessionPresent: present, returnCode: 0, reasonCode: 0 };
    if (this.version === 5) {
      connack.properties = {
        receiveMaximum: this.opts.receiveMaximum,
        retainAvailable: true,
        maximumPacketSize: this.opts.maxPacketSize,
        topicAliasMaximum: this.opts.topicAliasMaximum,
        wildcardSubscriptionAvailable: true,
        subscriptionIdentifiersAvailable: true,
        sharedSubscriptionAvailable: true,
        ...(serverKeepAlive !== undefined ? { serverKeepAlive } : {}),
        ...(assigned ? { assignedClientIdentifier: assigned } : {}),
        ...(props?.sessionExpiryInterval !== undefined && props.sessionExpiryInterval > maxExpiry
          ? { sessionExpiryInterval: maxExpiry }
          : {}),
      };
    }
    this.write(connack);
    // CONNACK travels alone: a client learns it is connected (and sets itself up) before the
    // messages a resumed session sends next reach it.
    this.uncork();
    this.state = 'connected';
    this.tokens = this.opts.publishRatePerSecond;
    this.tokensAt = Date.now();
    if (keepalive > 0) {
      // MQTT 3.1.2.10: one and a half keep-alive periods without a packet end the connection.
      this.keepaliveTimer = setTimeout(() => {
        this.stats.keepaliveTimeouts++;
        this.terminate('keepalive-timeout', { will: true, reasonCode: RC5.keepAliveTimeout });
      }, keepalive * 1500);
      this.keepaliveTimer.unref();
    }
    // PUBREL packets sent again on attach need no store write: they go out in their order.
    if (this.opts.durable) this.mark = this.opts.durable.changes;
    session.attach(this);
    this.hooks.established(this);
    this.holding = false;
    this.socket.resume();
    this.drain();
  }

  private refuse(reason5: number, reason3: number): void {
    const connack: Packet = { cmd: 'connack', sessionPresent: false, returnCode: reason3, reasonCode: reason5 };
    this.write(connack);
    this.terminate('refused', { will: false });
  }

  private onPublish(p: IPublishPacket): void {
    this.stats.publishReceived++;
    const id = p.messageId;
    const session = this.session!;
    let topic = p.topic;
    if (!this.wellFormed(topic)) return this.protocolError('topic name is not well-formed UTF-8', RC5.malformed);
    const alias = this.version === 5 ? p.properties?.topicAlias : undefined;
    if (alias !== undefined) {
      // MQTT 5 3.3.2.3.4: 1..Topic Alias Maximum; an empty topic uses the alias, a topic sets it.
      if (alias === 0 || alias > this.opts.topicAliasMaximum) {
        this.hooks.limitHit?.(this, 'topic_alias');
        return this.protocolError('topic alias out of range', RC5.topicAliasInvalid);
      }
      if (topic === '') {
        const known = this.aliases.get(alias);
        if (known === undefined) return this.protocolError('unknown topic alias', RC5.protocolError);
        topic = known;
      } else {
        this.aliases.set(alias, topic);
      }
    }
    if (!isValidTopicName(topic)) return this.protocolError('invalid topic name', RC5.topicNameInvalid);
    if (p.qos === 2 && id !== undefined && session.inboundQos2.has(id)) {
      // A retransmission of a QoS 2 PUBLISH already routed (MQTT 4.3.3, [MQTT-4.3.3-9]):
      // acknowledged again, never routed again.
      this.reply({ cmd: 'pubrec', messageId: id });
      return;
    }
    if (p.qos === 2 && session.inboundQos2.size >= this.opts.receiveMaximum) {
      // [MQTT-3.3.4-9]: more QoS 2 publications than our Receive Maximum without PUBREL. Refused
      // before routing: the message is not delivered.
      this.hooks.limitHit?.(this, 'receive_maximum');
      return this.protocolError('too many QoS 2 messages awaiting PUBREL', RC5.receiveMaximumExceeded);
    }
    if (this.opts.publishRatePerSecond > 0 && !this.takeToken()) {
      this.hooks.limitHit?.(this, 'publish_rate');
      return this.protocolError('publish rate above the limit', RC5.messageRateTooHigh);
    }
    if (!mayPublish(this.acl, topic)) {
      // Denied publications are dropped. MQTT 3.1.1 cannot say so, so the client still gets its
      // PUBACK/PUBREC as with mosquitto; MQTT 5 gets reason code 0x87 (3.4.2.1, 3.5.2.1), which
      // also ends a QoS 2 exchange.
      this.stats.publishDenied++;
      this.hooks.publishDenied?.(this, topic);
      const rc = this.version === 5 ? { reasonCode: RC5.notAuthorized } : {};
      if (p.qos === 1) this.reply({ cmd: 'puback', messageId: id!, ...rc });
      else if (p.qos === 2) {
        if (this.version !== 5) {
          session.inboundQos2.add(id!);
          session.touch();
        }
        this.reply({ cmd: 'pubrec', messageId: id!, ...rc });
      }
      return;
    }
    const message: Message = {
      topic,
      payload: ownBuffer(p.payload),
      qos: p.qos,
      retain: p.retain,
    };
    const fwd = forwardedProperties(p.properties);
    if (fwd) message.properties = fwd;
    if (p.properties?.messageExpiryInterval !== undefined) {
      message.expiresAt = Date.now() + p.properties.messageExpiryInterval * 1000;
    }
    if (p.qos === 2) {
      session.inboundQos2.add(id!);
      session.touch();
    }
    this.space!.publish(message, session);
    // With a durable store, sent once the message is stored for the stored sessions it reached
    // (and as the retained message); a QoS 0 message is not waited for.
    if (p.qos === 1) this.reply({ cmd: 'puback', messageId: id! });
    else if (p.qos === 2) this.reply({ cmd: 'pubrec', messageId: id! });
  }

  /** A token bucket of `publishRatePerSecond` tokens refilled continuously. */
  private takeToken(): boolean {
    const rate = this.opts.publishRatePerSecond;
    const now = Date.now();
    this.tokens = Math.min(rate, this.tokens + ((now - this.tokensAt) * rate) / 1000);
    this.tokensAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private onSubscribe(p: ISubscribePacket): void {
    const v5 = this.version === 5;
    // An ill-formed UTF-8 filter makes the packet malformed: the connection is closed, no SUBACK
    // ([MQTT-1.5.4-1], 3.1.1 [MQTT-1.5.3-1]).
    for (const s of p.subscriptions) {
      if (!this.wellFormed(s.topic)) return this.protocolError('topic filter is not well-formed UTF-8', RC5.malformed);
    }
    const subscriptionId = v5 ? (p.properties?.subscriptionIdentifier as number | undefined) : undefined;
    const session = this.session!;
    const limit = this.opts.maxSubscriptionsPerClient;
    let count = session.subscriptions.size;
    const accepted: Array<[string, QoS, { nl?: boolean; rap?: boolean; rh?: number }]> = [];
    const granted = p.subscriptions.map((s) => {
      if (!isValidTopicFilter(s.topic)) return v5 ? RC5.topicFilterInvalid : 0x80;
      const shared = isSharedSubscription(s.topic) ? parseShared(s.topic) : undefined;
      if (isSharedSubscription(s.topic)) {
        // MQTT 5 4.8.2: `$share/{ShareName}/{filter}`, ShareName without wildcards; no-local is
        // a protocol error on a shared subscription ([MQTT-3.8.3-4]), answered here as a refusal.
        if (!shared || !shared.filter || /[+#]/.test(shared.group)) return v5 ? RC5.topicFilterInvalid : 0x80;
        if (s.nl) return v5 ? RC5.protocolError : 0x80;
      }
      const aclFilter = shared ? shared.filter : s.topic;
      if (!maySubscribe(this.acl, aclFilter)) {
        this.stats.subscribeDenied++;
        this.log.debug({ tenantId: this.tenantId, deviceId: this.deviceId, filter: s.topic }, 'subscription denied by ACL');
        return v5 ? RC5.notAuthorized : 0x80;
      }
      if (limit > 0 && !session.subscriptions.has(s.topic) && count >= limit) {
        this.hooks.limitHit?.(this, 'subscriptions');
        return v5 ? RC5.quotaExceeded : 0x80;
      }
      if (!session.subscriptions.has(s.topic)) count++;
      const qos = Math.min(s.qos, 2) as QoS;
      accepted.push([s.topic, qos, s]);
      return qos;
    });
    // SUBACK first, then the retained messages (as mosquitto does). A stored session's SUBACK
    // waits for the subscriptions to be stored, and the retained messages may come before it
    // (MQTT 3.8.4 permits it).
    const stored = session.expiryMs > 0 || session.stored;
    // With other processes, a SUBACK that raises the tenant's interest waits until they know it
    // too (mqtt-listener.ts), so whatever is published after the SUBACK is sent here.
    const storing = stored || (this.opts.announcesInterest === true && accepted.length > 0 && this.space!.interest < (stored ? 2 : 1));
    if (!storing) this.reply({ cmd: 'suback', messageId: p.messageId!, granted });
    for (const [filter, qos, s] of accepted) {
      this.space!.subscribe(session, filter, {
        qos,
        noLocal: !!s.nl,
        retainAsPublished: !!s.rap,
        retainHandling: (s.rh ?? 0) as 0 | 1 | 2,
        ...(subscriptionId !== undefined ? { subscriptionId } : {}),
      });
    }
    if (storing) this.reply({ cmd: 'suback', messageId: p.messageId!, granted });
  }

  private onUnsubscribe(p: IUnsubscribePacket): void {
    for (const filter of p.unsubscriptions) {
      if (!this.wellFormed(filter)) return this.protocolError('topic filter is not well-formed UTF-8', RC5.malformed);
    }
    const codes = p.unsubscriptions.map((filter) =>
      this.space!.unsubscribe(this.session!, filter) ? RC5.success : RC5.noSubscriptionExisted,
    );
    this.reply({ cmd: 'unsuback', messageId: p.messageId!, granted: this.version === 5 ? codes : [] });
  }

  private onDisconnect(p: IDisconnectPacket): void {
    // MQTT 3.14.4-3: a DISCONNECT discards the will; MQTT 5 0x04 asks for it to be sent.
    const withWill = this.version === 5 && p.reasonCode === RC5.disconnectWithWill;
    const expiry = p.properties?.sessionExpiryInterval;
    if (this.version === 5 && expiry !== undefined && this.session) {
      // MQTT 3.14.2.2.2: a session that had expiry 0 cannot be given one at DISCONNECT.
      if (this.session.expiryMs === 0 && expiry > 0) return this.protocolError('session expiry set at DISCONNECT');
      this.session.expiryMs = Math.min(expiry, this.opts.maxSessionExpirySeconds) * 1000;
    }
    this.terminate('client-disconnect', { will: withWill });
  }

  // ------------------------------------------------------------------------------------------
  // Outlet: messages routed to this client's session.

  sendPublish(out: OutgoingPublish): boolean {
    if (this.state !== 'connected') return false;
    if (out.qos === 0 && this.socket.writableLength > this.opts.maxOutboundBufferBytes) return false;
    const m = out.message;
    let newAlias: number | undefined;
    const packet: IPublishPacket = {
      cmd: 'publish',
      topic: m.topic,
      payload: m.payload,
      qos: out.qos,
      retain: out.retain,
      dup: out.dup,
      ...(out.messageId !== undefined ? { messageId: out.messageId } : {}),
    };
    if (this.version === 5) {
      const props: NonNullable<IPublishPacket['properties']> = { ...(m.properties as IPublishPacket['properties']) };
      if (m.expiresAt !== undefined) {
        // MQTT 5 3.3.2.3.3: forwarded with the time left.
        const left = Math.ceil((m.expiresAt - Date.now()) / 1000);
        if (left <= 0) return false;
        props.messageExpiryInterval = left;
      }
      if (out.subscriptionIds?.length) {
        props.subscriptionIdentifier = out.subscriptionIds.length === 1 ? out.subscriptionIds[0]! : out.subscriptionIds;
      }
      if (this.clientAliasMaximum > 0) {
        // MQTT 5 3.3.2.3.4: a topic sent once with its alias is sent as the alias alone after.
        const known = this.outAliases.get(m.topic);
        if (known !== undefined) {
          props.topicAlias = known;
          packet.topic = '';
        } else if (this.outAliases.size < this.clientAliasMaximum) {
          newAlias = this.outAliases.size + 1;
          props.topicAlias = newAlias;
        }
      }
      if (Object.keys(props).length) packet.properties = props;
    }
    const buf = mqttPacket.generate(packet, { protocolVersion: this.version });
    // MQTT 5 3.1.2.11.4: never send a packet larger than the client accepts.
    if (buf.length > this.clientMaxPacketSize) return false;
    this.send(buf);
    if (newAlias !== undefined) this.outAliases.set(m.topic, newAlias);
    this.stats.publishSent++;
    return true;
  }

  sendPubrel(messageId: number): void {
    if (this.state !== 'connected') return;
    // After a PUBREC: once the release is stored, so a restart never sends the PUBLISH again.
    this.reply({ cmd: 'pubrel', messageId });
  }

  /**
   * Writes an acknowledgement: at once, or, when handling the packet changed stored state, once
   * the store has committed the change. Acknowledgements go out in the order they were made. A
   * change that could not be stored is never acknowledged as a success: an MQTT 5 PUBACK or PUBREC
   * carries 0x80 (unspecified error); anything else closes the connection (MQTT 5 with DISCONNECT
   * 0x80, unspecified error: 0x88 server unavailable is a CONNACK code only, MQTT 5 3.14.2.1).
   */
  private reply(packet: Packet): void {
    const durable = this.opts.durable;
    const wait = durable && durable.changes !== this.mark ? durable.committed() : undefined;
    if (!wait && this.repliesWaiting === 0) return this.write(packet);
    this.repliesWaiting++;
    this.replies = (this.replies ?? Promise.resolve()).then(async () => {
      const ok = wait ? await wait : true;
      this.repliesWaiting--;
      if (this.state !== 'connected') return;
      if (ok) return this.write(packet);
      this.log.debug({ tenantId: this.tenantId, clientId: this.clientId, cmd: packet.cmd }, 'not stored; not acknowledged');
      if (this.version === 5 && (packet.cmd === 'puback' || packet.cmd === 'pubrec')) {
        // A failed PUBREC ends the QoS 2 exchange (MQTT 5 4.3.3): its identifier is free again.
        if (packet.cmd === 'pubrec') this.session?.inboundQos2.delete(packet.messageId!);
        return this.write({ ...packet, reasonCode: RC5.unspecified });
      }
      this.terminate('store-failed', { will: true, reasonCode: RC5.unspecified });
    });
  }

  private write(packet: Packet): void {
    if (this.socket.destroyed) return;
    try {
      this.send(mqttPacket.generate(packet, { protocolVersion: this.version }));
    } catch (err) {
      this.log.warn({ err: (err as Error).message, cmd: packet.cmd }, 'could not encode MQTT packet');
    }
  }

  /**
   * The packets written while one event is handled (the PUBACKs of a chunk of PUBLISH packets,
   * the messages a chunk of PUBACKs lets out of the queue, a batch relayed from another listener
   * process) leave together: the socket is corked at the first and uncorked once the handler is
   * done, so they make one TLS record and one system call rather than one each.
   */
  private send(buf: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.socket.write(buf);
  }

  private readonly uncork = (): void => {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  };

  // ------------------------------------------------------------------------------------------

  /** Closes the connection once; later calls do nothing. */
  terminate(reason: CloseReason, opts: CloseOptions): void {
    if (this.state === 'closed') return;
    const wasConnected = this.state === 'connected';
    this.state = 'closed';
    clearTimeout(this.connectTimer);
    clearTimeout(this.keepaliveTimer);
    this.pending = [];
    this.pendingBytes = 0;

    let flush = reason === 'refused'; // the refusing CONNACK must get out
    if (wasConnected && this.version === 5 && opts.reasonCode !== undefined && !this.socket.destroyed) {
      // MQTT 5 lets the server say why it closes (4.13); 3.1.1 clients just see the close.
      this.write({ cmd: 'disconnect', reasonCode: opts.reasonCode });
      flush = true;
    }
    const session = this.session;
    const space = this.space;
    if (wasConnected && session && space) {
      session.detach(this);
      if (opts.endSession) space.endSession(session);
      else space.releaseSession(session);
      const will = this.will;
      this.will = undefined;
      if (opts.will && will) this.publishWill(space, session, will);
    }
    // What this turn wrote goes to the socket before it is closed, as when it was written.
    this.uncork();
    if (this.socket.destroyed) {
      // nothing to flush
    } else if (!flush && reason !== 'client-disconnect' && reason !== 'shutdown' && reason !== 'takeover') {
      this.socket.destroy();
    } else {
      // Let CONNACK/DISCONNECT reach the client, but never wait long for a peer that does not read.
      this.socket.end();
      const timer = setTimeout(() => this.socket.destroy(), 2_000).unref();
      this.socket.once('close', () => clearTimeout(timer));
    }
    this.log.debug({ tenantId: this.tenantId, deviceId: this.deviceId, clientId: this.clientId || undefined, reason }, 'MQTT connection closed');
    this.hooks.closed(this);
  }

  /**
   * MQTT 3.1.2.5 / MQTT 5 3.1.3.2.2: published after the Will Delay Interval (bounded by the
   * session expiry), unless the client is back on the same session by then. The ACL applies to
   * the will as to any publication.
   */
  private publishWill(space: TenantSpace, session: Session, will: Message): void {
    if (!mayPublish(this.acl, will.topic)) {
      this.hooks.publishDenied?.(this, will.topic);
      return;
    }
    space.scheduleWill(session, will, Math.min(this.willDelayMs, session.expiryMs));
  }
}
