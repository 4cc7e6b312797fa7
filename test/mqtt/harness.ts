/**
 * What the MQTT listener tests share: certificates made with the certs library, a test verifier
 * that decides from the certificates alone, a listener on a free port, and MQTT.js / mosquitto
 * clients over real TLS sockets.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import * as mqttPacket from 'mqtt-packet';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pino from 'pino';
import { createCa, createDevice, createIntermediate, createServer, type Credentials } from '../../src/certs/certs-service.js';
import { createMqttListener, type MqttListener, type MqttListenerOptions } from '../../src/mqtt/mqtt-listener.js';
import {
  VerifierUnavailableError,
  type AclRule,
  type AuthenticateRequest,
  type Decision,
  type SessionChange,
  type Verifier,
} from '../../src/verifier/verifier-types.js';

export const execFileAsync = promisify(execFile);

export async function tempDir(t: TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-mqtt-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

// -------------------------------------------------------------------------------------------
// Certificates

export interface ServerPki {
  ca: Credentials;
  server: Credentials;
}

let serverPki: Promise<ServerPki> | undefined;

/** The listener's own CA and certificate (localhost, 127.0.0.1), made once per test file. */
export function serverCredentials(): Promise<ServerPki> {
  serverPki ??= (async () => {
    const ca = await createCa({ cn: 'MQTT test server CA' });
    const server = await createServer({ issuer: ca, dns: ['localhost'], ip: ['127.0.0.1'] });
    return { ca, server };
  })();
  return serverPki;
}

export interface TenantPki {
  tenantId: string;
  root: Credentials;
  intermediate: Credentials;
}

/** A tenant's root and intermediate CA; the test verifier trusts the root for this tenant. */
export async function tenantPki(tenantId: string): Promise<TenantPki> {
  const root = await createCa({ cn: `${tenantId} Root CA` });
  const intermediate = await createIntermediate({ issuer: root, cn: `${tenantId} Devices CA` });
  return { tenantId, root, intermediate };
}

export function device(issuer: Credentials, cn: string): Promise<Credentials> {
  return createDevice({ issuer, cn });
}

// -------------------------------------------------------------------------------------------
// Test verifier: decides from the presented chain and the anchors it was given. A test double
// for the listener; the real verifier is tested on its own and end to end.

export interface TestVerifierOptions {
  /** Extra ACL rules for every device, after the default `devices/{name}/#` publish + subscribe. */
  acl?: (deviceName: string) => AclRule[];
  /** Deny rules for a device, before every allow rule (as the verifier orders a profile's). */
  deny?: (deviceName: string) => AclRule[];
}

export class TestVerifier implements Verifier {
  readonly requests: AuthenticateRequest[] = [];
  readonly anchors: Array<{ tenantId: string; cert: X509Certificate; fingerprint: string }> = [];
  /** When set, every call fails with it (a store that is down). */
  failWith: Error | undefined;
  /** When set, every call waits this long first. */
  delayMs = 0;

  constructor(private readonly opts: TestVerifierOptions = {}) {}

  trust(tenantId: string, ca: Credentials): void {
    this.trustPem(tenantId, ca.certPem);
  }

  trustPem(tenantId: string, pem: string): void {
    const cert = new X509Certificate(pem);
    this.anchors.push({ tenantId, cert, fingerprint: createHash('sha1').update(cert.raw).digest('hex') });
  }

  /** CNs denied as DEVICE_DISABLED from now on. */
  readonly disabled = new Set<string>();

  async authenticate(req: AuthenticateRequest): Promise<Decision> {
    this.requests.push(req);
    // Decide first, answer later: a slow verifier answers on the state it read.
    const decision = this.decide(req);
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failWith) throw this.failWith;
    return decision;
  }

  private decide(req: AuthenticateRequest): Decision {
    const chain = req.certificateChain.map((b64) => new X509Certificate(Buffer.from(b64, 'base64')));
    const leaf = chain[0];
    if (!leaf) return deny('MALFORMED_CERTIFICATE');
    const cn = /CN=([^\n,]+)/.exec(leaf.subject)?.[1] ?? '';
    if (cn === 'explode') throw new Error('verifier bug');
    if (cn === 'unavailable') throw new VerifierUnavailableError();
    // A path from the leaf through any of the presented certificates, in whatever order sent.
    let c = leaf;
    for (let depth = 0; depth < 10; depth++) {
      const anchor = this.anchors.find((a) => c.checkIssued(a.cert) && c.verify(a.cert.publicKey));
      if (anchor) {
        if (cn.startsWith('deny') || this.disabled.has(cn)) return deny('DEVICE_DISABLED');
        const deviceId = `${anchor.tenantId}:${cn}`;
        const acl: AclRule[] = [
          ...(this.opts.deny?.(cn) ?? []),
          { permission: 'allow', action: 'publish', topic: `devices/${cn}/#` },
          { permission: 'allow', action: 'subscribe', topic: `devices/${cn}/#` },
          ...(this.opts.acl?.(cn) ?? []),
        ];
        return {
          result: 'allow',
          is_superuser: false,
          tenantId: anchor.tenantId,
          device: { id: deviceId, name: cn, autoRegistered: false },
          matchedBy: 'TRUSTED_CERTIFICATE',
          trustedCertificateFingerprint: anchor.fingerprint,
          acl,
          client_attrs: { tenant_id: anchor.tenantId, device_id: deviceId, device_name: cn },
          cacheTtlSeconds: 60,
          expire_at: Math.floor(Date.now() / 1000) + 3600,
        };
      }
      const issuer = c;
      const next = chain.find((p) => p !== issuer && issuer.checkIssued(p) && issuer.verify(p.publicKey));
      if (!next) break;
      c = next;
    }
    return deny('NO_TRUSTED_ANCHOR');
  }
}

function deny(reason: 'MALFORMED_CERTIFICATE' | 'NO_TRUSTED_ANCHOR' | 'DEVICE_DISABLED'): Decision {
  return { result: 'deny', reason, message: reason.toLowerCase() };
}

// -------------------------------------------------------------------------------------------
// Listener

export class ChangeFeed {
  private readonly fns = new Set<(c: SessionChange) => void>();
  subscribe(fn: (c: SessionChange) => void): () => void {
    this.fns.add(fn);
    return () => this.fns.delete(fn);
  }
  emit(c: SessionChange): void {
    for (const fn of this.fns) fn(c);
  }
}

export interface RunningListener {
  listener: MqttListener;
  port: number;
  url: string;
  caPem: string;
  changes: ChangeFeed;
  connected: Array<{ tenantId: string; deviceId: string; at: Date }>;
}

export async function startListener(
  t: TestContext,
  verifier: Verifier,
  overrides: Partial<MqttListenerOptions> = {},
): Promise<RunningListener> {
  const { ca, server } = await serverCredentials();
  const changes = new ChangeFeed();
  const connected: RunningListener['connected'] = [];
  const listener = createMqttListener({
    verifier,
    host: '127.0.0.1',
    port: 0,
    tls: { cert: server.certPem, key: server.keyPem },
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    sessionChanges: changes,
    connectionRecorder: { connected: (tenantId, deviceId, at) => connected.push({ tenantId, deviceId, at }) },
    ...overrides,
  });
  const { port } = await listener.listen();
  t.after(() => listener.close());
  return { listener, port, url: `mqtts://localhost:${port}`, caPem: ca.certPem, changes, connected };
}

// -------------------------------------------------------------------------------------------
// MQTT.js

export interface ClientOptions extends IClientOptions {
  /** PKCS#12 keystore (Node TLS options, passed through by MQTT.js). */
  pfx?: Buffer;
  passphrase?: string;
  creds?: Credentials;
  /** Send the intermediates too (leaf first). */
  chain?: boolean;
}

/** Connects and resolves once CONNACK arrives, or rejects with the client's error (e.g. code 5). */
export function connect(t: TestContext, l: RunningListener, opts: ClientOptions = {}): Promise<MqttClient> {
  const { creds, chain, ...rest } = opts;
  const client = mqtt.connect(l.url, {
    ca: l.caPem,
    ...(creds ? { key: creds.keyPem, cert: chain ? withoutRoot(creds) : creds.certPem } : {}),
    ...(opts.cert ? { cert: opts.cert } : {}),
    reconnectPeriod: 0,
    connectTimeout: 5_000,
    protocolVersion: 4,
    ...rest,
  });
  t.after(() => client.end(true));
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', (err) => {
      client.end(true);
      reject(err);
    });
    client.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

/** Leaf and intermediates, without the self-signed root (what devices usually send). */
export function withoutRoot(creds: Credentials): string {
  const certs = creds.chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
  return certs.slice(0, Math.max(1, certs.length - 1)).join('');
}

/** Resolves with the error that refused the connection: MQTT.js puts the CONNACK code in `code`. */
export async function refused(t: TestContext, l: RunningListener, opts: ClientOptions): Promise<number | undefined> {
  try {
    await connect(t, l, opts);
  } catch (err) {
    return (err as { code?: number }).code;
  }
  throw new Error('connection was accepted');
}

/** SUBSCRIBE and the SUBACK codes, failures included (MQTT.js turns those into an error). */
export function suback(client: MqttClient, topics: Record<string, { qos: 0 | 1 | 2 }>): Promise<number[]> {
  return new Promise((resolve, reject) => {
    client.subscribe(topics, (err, _subs, packet) => {
      const granted = (packet as { granted?: number[] } | undefined)?.granted;
      if (granted) resolve(granted);
      else reject(err ?? new Error('no SUBACK'));
    });
  });
}

export interface Received {
  topic: string;
  payload: string;
  retain: boolean;
  qos: number;
}

/** Collects messages a client receives. */
export function collect(client: MqttClient): Received[] {
  const got: Received[] = [];
  client.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), retain: packet.retain, qos: packet.qos }));
  return got;
}

export async function waitFor(cond: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - start;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// -------------------------------------------------------------------------------------------
// mosquitto clients

export async function hasMosquittoClients(): Promise<boolean> {
  try {
    await execFileAsync('mosquitto_pub', ['--help']).catch((e: { code?: unknown }) => {
      if (e.code === 'ENOENT') throw e;
    });
    return true;
  } catch {
    return false;
  }
}

export async function writeFiles(dir: string, files: Record<string, string>): Promise<void> {
  for (const [name, content] of Object.entries(files)) await fs.writeFile(path.join(dir, name), content, { mode: 0o600 });
}

export function spawnTool(cmd: string, args: string[], cwd: string): ChildProcess & { output: () => string } {
  const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return Object.assign(child, { output: () => out });
}

/**
 * The exit code, once the process has exited and its output has been read to the end: `exit` can
 * come before the last of stdout, `close` comes after it (a tool's last line is not lost).
 */
export function exited(child: ChildProcess, timeoutMs = 10_000): Promise<number | null> {
  const drained = [child.stdout, child.stderr].every((s) => !s || s.readableEnded || s.destroyed);
  if (child.exitCode !== null && drained) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('process did not exit in time'));
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve(code ?? child.exitCode);
    });
  });
}

export function sha1(pem: string): string {
  return createHash('sha1').update(new X509Certificate(pem).raw).digest('hex');
}

// -------------------------------------------------------------------------------------------
// A raw MQTT client (mqtt-packet over TLS) for exchanges MQTT.js will not make on purpose:
// resending a packet identifier, never acknowledging, ill-formed UTF-8.

export class RawClient {
  /** Packets received and not yet taken, in arrival order. */
  readonly inbox: mqttPacket.Packet[] = [];
  closed = false;
  private readonly waiters = new Set<() => void>();

  private constructor(
    readonly socket: tls.TLSSocket,
    readonly version: 4 | 5,
  ) {
    const parser = mqttPacket.parser({ protocolVersion: version });
    parser.on('packet', (p: mqttPacket.Packet) => {
      this.inbox.push(p);
      this.wake();
    });
    socket.on('data', (d: Buffer) => parser.parse(d));
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static open(t: TestContext, l: RunningListener, creds: Credentials, version: 4 | 5 = 4): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: l.port, servername: 'localhost', ca: l.caPem, key: creds.keyPem, cert: withoutRoot(creds) });
      t.after(() => socket.destroy());
      socket.once('secureConnect', () => resolve(new RawClient(socket, version)));
      socket.once('error', reject);
    });
  }

  /** Opens and sends CONNECT; resolves with the CONNACK. */
  static async connect(
    t: TestContext,
    l: RunningListener,
    creds: Credentials,
    connect: Partial<mqttPacket.IConnectPacket>,
    version: 4 | 5 = 4,
  ): Promise<{ client: RawClient; connack: mqttPacket.IConnackPacket }> {
    const client = await RawClient.open(t, l, creds, version);
    client.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, keepalive: 0, clientId: '', ...connect } as mqttPacket.IConnectPacket);
    const connack = (await client.take('connack')) as mqttPacket.IConnackPacket;
    return { client, connack };
  }

  send(packet: mqttPacket.Packet): void {
    this.socket.write(mqttPacket.generate(packet, { protocolVersion: this.version }));
  }

  /** Raw bytes, for packets mqtt-packet would not encode (ill-formed UTF-8). */
  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** The next packet of that kind (others stay in the inbox); rejects on close or timeout. */
  async take(cmd: mqttPacket.Packet['cmd'], timeoutMs = 10_000): Promise<mqttPacket.Packet> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex((p) => p.cmd === cmd);
      if (i !== -1) return this.inbox.splice(i, 1)[0]!;
      if (this.closed) throw new Error(`connection closed before ${cmd}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${cmd}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.waiters.add(done);
      });
    }
  }

  /** Resolves once the server has closed the connection. */
  async waitClosed(timeoutMs = 10_000): Promise<void> {
    await waitFor(() => this.closed, timeoutMs, 'the server to close the connection');
  }

  /** PINGREQ and its PINGRESP: everything the server wrote before it has arrived. */
  async sync(): Promise<void> {
    this.send({ cmd: 'pingreq' });
    await this.take('pingresp');
  }

  end(): void {
    this.socket.end();
  }

  private wake(): void {
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }
}
