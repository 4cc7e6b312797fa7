/**
 * Fault injection: a PostgreSQL of the test's own (never the suite's shared one) that the test
 * stops, starts again on the same port and data directory, freezes (SIGSTOP to the postmaster
 * and every backend) and thaws, and whose LISTEN connections it terminates; and certgate as
 * operators run it against that database: `src/server.ts` with MQTT_WORKERS=2, so the REST API
 * and its verifier run in one process and the MQTT listener in two worker processes, each with
 * its own verifier and change feed.
 *
 * Everything is thawed and stopped in the file's after-hook, whatever the tests did.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { promisify } from 'node:util';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/db/embedded-postgres.js';
import { makeLeaf, makeRoot, type TestCert } from '../helpers/pki-fixtures.js';
import { api, apiOk, startService, until, type Service } from '../helpers/service.js';

const run = promisify(execFile);

export const MGMT_PASSWORD = 'fault-management-pass';
export const MGMT = `management/admin:${MGMT_PASSWORD}`;
export const VERIFIER_TOKEN = 'fault-verifier-token-0123456789abcdef';
export const WORKERS = 2;
/** The application name of certgate's LISTEN connections. */
export const FEED_APPLICATION_NAME = 'certgate change feed';

/** Rounds of the repeated checks; FAULT_ROUNDS=10 for a longer run by hand. */
export const ROUNDS = Math.max(1, Number(process.env.FAULT_ROUNDS ?? 1) || 1);

/** A line for the CI log. */
export function report(line: string): void {
  process.stdout.write(`fault: ${line}\n`);
}

// -------------------------------------------------------------------------------------------
// The database

export interface FaultDatabase {
  /** The `certgate` database, as certgate is given it (DATABASE_URL). */
  url: string;
  dataDir: string;
  /** Fast shutdown (SIGINT to the postmaster: `pg_ctl stop -m fast`); resolves once it exited. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  start(): Promise<void>;
  /** SIGSTOP to the postmaster and all its children. */
  freeze(): Promise<number[]>;
  /** SIGCONT to everything `freeze` stopped (and the postmaster's current children). */
  thaw(): Promise<void>;
  running(): boolean;
  frozen(): boolean;
  /** Terminates the backends that LISTEN (every change feed connection); returns how many. */
  terminateListeners(): Promise<number>;
  /** One query on a connection of its own, closed afterwards. */
  query<R extends pg.QueryResultRow = any>(sql: string, params?: unknown[]): Promise<R[]>;
  /** Thaws, stops and removes everything. */
  destroy(): Promise<void>;
}

export async function startFaultDatabase(): Promise<FaultDatabase> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-fault-pg-'));
  // PostgreSQL runs as the postgres user when the tests run as root: it must enter the directory.
  await fs.chmod(dir, 0o755);
  let db: EmbeddedDatabase | undefined = await startEmbeddedPostgres(dir);
  const url = db.url;
  let stopped: number[] = [];
  const settings = JSON.parse(await fs.readFile(path.join(dir, 'embedded-postgres.json'), 'utf8')) as { clusterDir?: string };
  const clusterDir = settings.clusterDir ?? path.join(dir, 'pg');

  const postmasterPid = async (): Promise<number> => {
    const text = await fs.readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8');
    const pid = Number(text.split('\n')[0]);
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no postmaster pid in ${clusterDir}/postmaster.pid`);
    return pid;
  };
  const signal = (pid: number, sig: NodeJS.Signals): void => {
    try {
      process.kill(pid, sig);
    } catch {
      // gone already
    }
  };

  const self: FaultDatabase = {
    url,
    dataDir: dir,
    async stop() {
      if (!db) return;
      await self.thaw();
      const d = db;
      db = undefined;
      await d.stop();
    },
    async start() {
      if (db) return;
      const again = await startEmbeddedPostgres(dir);
      db = again;
      if (again.url !== url) {
        throw new Error(`PostgreSQL came back on another address (${again.url.replace(/:[^:@/]+@/, ':***@')}): its port was taken`);
      }
    },
    async freeze() {
      const pm = await postmasterPid();
      // The postmaster first: stopped, it starts no new backend while the others are stopped.
      signal(pm, 'SIGSTOP');
      const children = await childrenOf(pm);
      for (const c of children) signal(c, 'SIGSTOP');
      stopped = [pm, ...children];
      return stopped;
    },
    async thaw() {
      if (stopped.length === 0) return;
      const pm = stopped[0]!;
      const all = new Set([...stopped, ...(await childrenOf(pm))]);
      for (const p of all) if (p !== pm) signal(p, 'SIGCONT');
      signal(pm, 'SIGCONT');
      stopped = [];
    },
    running: () => db !== undefined,
    frozen: () => stopped.length > 0,
    async terminateListeners() {
      // A LISTEN connection shows LISTEN as its last statement, unless it has run another one since
      // (the change counter is read through it): it is then known by its application name.
      const which = `FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (query ILIKE 'LISTEN%' OR application_name = '${FEED_APPLICATION_NAME}')`;
      const rows = await self.query<{ terminated: boolean }>(`SELECT pg_terminate_backend(pid) AS terminated ${which}`);
      return rows.filter((r) => r.terminated).length;
    },
    async query(sql, params = []) {
      const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
      await c.connect();
      try {
        return (await c.query(sql, params)).rows;
      } finally {
        await c.end();
      }
    },
    async destroy() {
      await self.thaw().catch(() => {});
      await self.stop().catch(() => {});
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
  return self;
}

/** The processes whose parent is `pid`, read from /proc. */
async function childrenOf(pid: number): Promise<number[]> {
  try {
    const { stdout } = await run('pgrep', ['-P', String(pid)]);
    return stdout.split('\n').filter(Boolean).map(Number);
  } catch (err) {
    // pgrep exits 1 when nothing matches
    if ((err as { code?: number }).code === 1) return [];
    const out: number[] = [];
    for (const entry of await fs.readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = await fs.readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      // pid (comm) state ppid ...; comm may hold spaces, so read after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    }
    return out;
  }
}

// -------------------------------------------------------------------------------------------
// certgate on it

export interface FaultEnv {
  db: FaultDatabase;
  /** The process serving the REST API and its verifier. */
  api: Service;
  /** The process whose workers serve MQTT: the same as `api`, or `certgate mqtt` in split mode. */
  mqtt: Service;
  http: string;
  mqttPort: number;
  serverCa: Buffer;
  /** Scratch directory of the file, removed afterwards. */
  dir: string;
}

export interface FaultEnvOptions {
  /**
   * `together` (default): `src/server.ts` with MQTT_WORKERS workers, each deciding with its own
   * verifier. `split`: `certgate api`, and `certgate mqtt` with MQTT_WORKERS workers asking the
   * API's verifier over HTTP and following changes on the database for their live sessions.
   */
  layout?: 'together' | 'split';
  env?: Record<string, string>;
}

/**
 * A database and certgate (the API and MQTT_WORKERS worker processes) for the test file. The
 * returned function gives them to the tests.
 */
export function faultEnvForFile(opts: FaultEnvOptions = {}): () => FaultEnv {
  let state: FaultEnv | undefined;
  let db: FaultDatabase | undefined;
  const services: Service[] = [];
  let dir = '';
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-fault-'));
    db = await startFaultDatabase();
    const common = { DATABASE_URL: db.url, VERIFIER_TOKEN, MANAGEMENT_ADMIN_PASSWORD: MGMT_PASSWORD };
    let api: Service;
    let mqtt: Service;
    if (opts.layout === 'split') {
      api = await startService({ mode: 'api', startTimeoutMs: 120_000, env: { ...common, ...opts.env } });
      services.push(api);
      mqtt = await startService({
        mode: 'mqtt',
        startTimeoutMs: 120_000,
        env: { ...common, MQTT_WORKERS: String(WORKERS), VERIFIER_URL: api.httpUrl, ...opts.env },
      });
      services.push(mqtt);
    } else {
      api = mqtt = await startService({ mode: 'all', startTimeoutMs: 120_000, env: { ...common, MQTT_WORKERS: String(WORKERS), ...opts.env } });
      services.push(api);
    }
    await until(() => workersListening(mqtt) >= WORKERS, 60_000, 'both MQTT workers listening');
    state = { db, api, mqtt, http: api.httpUrl, mqttPort: mqtt.mqttPort, serverCa: await fs.readFile(mqtt.serverCaPath), dir };
  });
  after(async () => {
    // Thawed first: a frozen database would hold certgate's shutdown.
    await db?.thaw().catch(() => {});
    if (db && !db.running()) await db.start().catch(() => {});
    for (const s of services.reverse()) await s.stop();
    await db?.destroy();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });
  return () => {
    if (!state) throw new Error('fault environment not started');
    return state;
  };
}

interface LogLine {
  msg?: string;
  worker?: number;
  clientId?: string;
  result?: string;
  reason?: string;
  time?: number;
}

const parsed = new WeakMap<Service, { offset: number; lines: LogLine[] }>();

/** certgate's JSON log lines so far (parsed once each). */
export function logLines(service: Service): LogLine[] {
  let state = parsed.get(service);
  if (!state) parsed.set(service, (state = { offset: 0, lines: [] }));
  const out = service.output();
  const end = out.lastIndexOf('\n') + 1;
  if (end > state.offset) {
    for (const line of out.slice(state.offset, end).split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        state.lines.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line
      }
    }
    state.offset = end;
  }
  return state.lines;
}

function workersListening(service: Service): number {
  return new Set(logLines(service).filter((l) => l.msg === 'MQTT mTLS listener started' && l.worker !== undefined).map((l) => l.worker)).size;
}

/** The workers' decision lines (allowed, denied, unavailable) of this client id, oldest first. */
export function decisionLines(service: Service, clientId: string): LogLine[] {
  return logLines(service).filter(
    (l) => l.clientId === clientId && l.worker !== undefined && typeof l.msg === 'string' && l.msg.startsWith('MQTT authentication'),
  );
}

/** Waits until `/ready` answers 200; returns when it did. */
export async function waitReady(http: string, timeoutMs = 60_000): Promise<number> {
  await until(async () => (await fetch(`${http}/ready`, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined))?.status === 200, timeoutMs, '/ready');
  return Date.now();
}

// -------------------------------------------------------------------------------------------
// Tenants and devices

export interface Tenant {
  id: string;
  auth: string;
  base: string;
  ca: TestCert;
  caFingerprint: string;
  profileId: string;
}

export interface Device {
  name: string;
  leaf: TestCert;
  /** Leaf then CA, PEM. */
  chain: string;
  key: string;
}

let tenantSeq = 0;

/** A unique tenant id with this prefix (`^[a-z][a-z0-9-]{1,31}$`). */
export function tenantId(prefix: string): string {
  return `${prefix}-${process.pid.toString(36)}${(tenantSeq++).toString(36)}`.slice(0, 32);
}

/**
 * A tenant trusting a new root CA, with auto-registration, whose profile accepts any client id
 * (so every connect attempt can use a client id of its own: no take-over between attempts).
 */
export async function createTenant(http: string, id: string): Promise<Tenant> {
  await apiOk(http, 'POST', '/tenant/tenants', MGMT, {
    id,
    company: `${id} Inc`,
    domain: `${id}.example.com`,
    adminName: 'admin',
    adminPass: 'tenant-admin-pass',
  });
  const auth = `${id}/admin:tenant-admin-pass`;
  const base = `/tenant/tenants/${id}`;
  const profile = await apiOk(http, 'POST', `${base}/device-profiles`, auth, { name: 'any-client-id', clientIdPolicy: 'ANY' });
  const ca = makeRoot({ subject: `CN=${id} Root CA,O=certgate fault tests` });
  const trusted = await apiOk(http, 'POST', `${base}/trusted-certificates`, auth, {
    status: 'ENABLED',
    autoRegistrationEnabled: true,
    certInPemFormat: ca.pem,
    deviceProfileId: profile.id,
  });
  return { id, auth, base, ca, caFingerprint: trusted.fingerprint as string, profileId: profile.id as string };
}

export function makeDevice(tenant: Tenant, name: string): Device {
  const leaf = makeLeaf(tenant.ca, { subject: `CN=${name}` });
  return { name, leaf, chain: leaf.pem + tenant.ca.pem, key: leaf.key.privateKeyPem };
}

export async function deviceIdOf(http: string, tenant: Tenant, name: string): Promise<string> {
  const body = await apiOk(http, 'GET', `${tenant.base}/devices?name=${encodeURIComponent(name)}`, tenant.auth);
  const id = body.devices[0]?.id as string | undefined;
  if (!id) throw new Error(`no device ${name} in ${tenant.id}`);
  return id;
}

// -------------------------------------------------------------------------------------------
// MQTT

export interface Attempt {
  clientId: string;
  /** CONNACK code (0 = allowed), or 'closed' when the connection ended without one, 'timeout'. */
  code: number | 'closed' | 'timeout' | 'error';
  ms: number;
  /** The worker that decided, from its log line (when it wrote one). */
  worker?: number;
  client?: MqttClient;
  error?: string;
  /** CONNACK session present, on an allowed connect. */
  sessionPresent?: boolean;
  /** Every message the client received, from the CONNACK on. */
  received: Received[];
}

export interface Received {
  topic: string;
  payload: string;
  retain: boolean;
}

let clientSeq = 0;

export function uniqueClientId(prefix: string): string {
  return `${prefix}-${process.pid.toString(36)}-${(clientSeq++).toString(36)}`;
}

/**
 * One CONNECT of the device with a fresh client id. An allowed connection stays open when `keep`
 * (the caller ends it), else it is closed at once.
 */
export async function attempt(
  env: FaultEnv,
  device: Device,
  opts: { keep?: boolean; protocolVersion?: 4 | 5; clientId?: string; timeoutMs?: number; clean?: boolean; extra?: IClientOptions } = {},
): Promise<Attempt> {
  const clientId = opts.clientId ?? uniqueClientId(device.name);
  // Client ids may repeat: this attempt's decision is the first line after those seen so far.
  const seen = decisionLines(env.mqtt, clientId).length;
  const started = Date.now();
  const client = mqtt.connect(`mqtts://localhost:${env.mqttPort}`, {
    ca: env.serverCa,
    cert: device.chain,
    key: device.key,
    clientId,
    reconnectPeriod: 0,
    connectTimeout: opts.timeoutMs ?? 20_000,
    protocolVersion: opts.protocolVersion ?? 4,
    clean: opts.clean ?? true,
    ...opts.extra,
  } as IClientOptions);
  const received: Received[] = [];
  client.on('message', (topic, payload, packet) => received.push({ topic, payload: payload.toString(), retain: packet.retain }));
  const outcome = await new Promise<Pick<Attempt, 'code' | 'error' | 'sessionPresent'>>((resolve) => {
    client.once('connect', (connack) => resolve({ code: 0, sessionPresent: connack.sessionPresent }));
    client.once('error', (err) => {
      const code = (err as { code?: unknown }).code;
      resolve(typeof code === 'number' ? { code } : { code: 'error', error: err.message });
    });
    client.once('close', () => resolve({ code: 'closed' }));
  });
  const ms = Date.now() - started;
  if (outcome.code !== 0 || !opts.keep) client.end(true);
  // The worker logs its decision right before it answers; the line may still be on its way.
  // "Unavailable" is logged once in a while, not per CONNECT: its worker stays unknown.
  const line = () => decisionLines(env.mqtt, clientId)[seen];
  const decided = typeof outcome.code === 'number' && outcome.code !== 3 && outcome.code !== 0x88;
  if (!line() && decided) await until(() => line() !== undefined, 2_000).catch(() => undefined);
  const worker = line()?.worker;
  return {
    clientId,
    received,
    ...outcome,
    ms,
    ...(worker !== undefined ? { worker } : {}),
    ...(outcome.code === 0 && opts.keep ? { client } : {}),
  };
}

/**
 * Live sessions of the device, at least one on each worker: connects (up to `maxTries`) until
 * every worker holds `perWorker` of them. Throws when a connect is refused.
 */
export async function sessionsOnEveryWorker(env: FaultEnv, device: Device, perWorker = 1, maxTries = 200): Promise<Attempt[]> {
  const kept: Attempt[] = [];
  const count = new Map<number, number>();
  const done = () => count.size >= WORKERS && [...count.values()].every((n) => n >= perWorker);
  for (let i = 0; i < maxTries && !done(); i++) {
    const a = await attempt(env, device, { keep: true });
    if (a.code !== 0) {
      for (const k of kept) k.client?.end(true);
      throw new Error(`${device.name}: connect refused with ${a.code} ${a.error ?? ''}`);
    }
    const n = count.get(a.worker ?? -1) ?? 0;
    if (a.worker !== undefined && n < perWorker) {
      count.set(a.worker, n + 1);
      kept.push(a);
    } else {
      a.client?.end(true);
    }
  }
  if (done()) return kept;
  for (const a of kept) a.client?.end(true);
  throw new Error(`${device.name}: after ${maxTries} connects the workers hold ${JSON.stringify([...count])}`);
}

/**
 * Allowed connections of the device, one on each worker: connects with fresh client ids (each
 * must be allowed) until every worker holds one; the connections beyond those are closed.
 */
export async function onEveryWorker(env: FaultEnv, device: Device, opts: Parameters<typeof attempt>[2] = {}): Promise<Attempt[]> {
  const byWorker = new Map<number, Attempt>();
  await until(async () => {
    const a = await attempt(env, device, { ...opts, keep: true });
    assert.equal(a.code, 0, `${device.name} connects`);
    if (a.worker !== undefined && !byWorker.has(a.worker)) byWorker.set(a.worker, a);
    else a.client!.end(true);
    return byWorker.size >= WORKERS;
  }, 60_000, 'a connection on every worker');
  return [...byWorker.values()];
}

/** SUBSCRIBE with QoS 1, resolved on its SUBACK. */
export function subscribe(client: MqttClient, filter: string): Promise<void> {
  return new Promise((resolve, reject) => client.subscribe(filter, { qos: 1 }, (err) => (err ? reject(err) : resolve())));
}

/** PUBLISH with QoS 1, resolved on its PUBACK. */
export function publish(client: MqttClient, topic: string, payload: string, retain: boolean): Promise<void> {
  return new Promise((resolve, reject) => client.publish(topic, payload, { qos: 1, retain }, (err) => (err ? reject(err) : resolve())));
}

/** Resolves with the time (Date.now()) the client's connection closed; at once if it is closed. */
export function closedAt(client: MqttClient): Promise<number> {
  return new Promise((resolve) => {
    if (!client.connected) resolve(Date.now());
    else client.once('close', () => resolve(Date.now()));
  });
}

// -------------------------------------------------------------------------------------------
// The HTTP verifier

export interface VerifierAnswer {
  status: number | 'timeout' | 'error';
  result?: string;
  reason?: string;
  ms: number;
}

export async function verify(http: string, device: Device, clientId = uniqueClientId(device.name), timeoutMs = 20_000): Promise<VerifierAnswer> {
  const started = Date.now();
  try {
    const res = await fetch(`${http}/verifier/v1/authenticate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${VERIFIER_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ clientId, certificateChain: [device.leaf.pem, device.chain.slice(device.leaf.pem.length)] }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let body: { result?: string; reason?: string } = {};
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // not JSON
    }
    return { status: res.status, ...(body.result ? { result: body.result } : {}), ...(body.reason ? { reason: body.reason } : {}), ms: Date.now() - started };
  } catch (err) {
    return { status: (err as Error).name === 'TimeoutError' ? 'timeout' : 'error', ms: Date.now() - started };
  }
}

export { api, apiOk, until };
