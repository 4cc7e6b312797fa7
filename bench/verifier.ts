/**
 * `npm run bench:verifier`: certgate's verifier against two peer baselines on this machine.
 *
 * Three servers, each in its own child process (its own event loop), loaded one at a time by the
 * same autocannon client in this process on 127.0.0.1 (only the loaded one does any work):
 *   1. hello    - a Fastify hello-world POST route (posted the warm verifier body);
 *   2. x509     - a Fastify route doing a plain Node `crypto.X509Certificate` 2-link chain check,
 *                 posted a different leaf on every request (the cold bodies);
 *   3. certgate - the real server (startServer) with its own embedded PostgreSQL (or DATABASE_URL),
 *                 a tenant trusting a CA with auto-registration on and pre-registered devices:
 *                 warm (the same known chain every request), cold (a never-seen leaf of an
 *                 existing device every request, with its CA) and cold leaf-only (a never-seen leaf
 *                 alone, base64 DER in one string, as EMQX's `${cert_pem}` and VerneMQ's
 *                 `client_cert` carry it: the path is built from the tenant's trusted CA); then the scale pair: cold on a tenant with 10
 *                 devices and cold on a tenant with 100,000 devices and 1,000 trusted CAs.
 * Each target gets a warm-up, then the measured time is split into rounds that visit the targets
 * in turn, so a change in background load falls on all of them alike. Prints warm_ratio,
 * cold_ratio and scale_ratio with each side's req/s and p50/p99 latency, and who used the CPU.
 *
 * BENCH_WITHOUT=all (or a list of src/lib/without.ts's names) then measures what each of the
 * verifier's hot-path mechanisms buys: per mechanism, two more certgate servers on the same
 * database, started fresh side by side, one as built and one with that mechanism off
 * (CERTGATE_WITHOUT), loaded with the target the mechanism can change, with the same warm-up and in
 * the same rounds: warm for the decision cache; cold for the credential index. Prints
 * `buys_<name>=<req/s with / req/s without - 1>` per mechanism.
 *
 * Environment: BENCH_DURATION (measured s per target, default 10), BENCH_ROUNDS (2),
 * BENCH_WARMUP (s, 2), BENCH_CONNECTIONS (32), BENCH_LOG_LEVEL (certgate's LOG_LEVEL, default
 * warn; at info and below its log goes to a file), BENCH_PROFILE=<dir> (certgate writes a V8 CPU
 * profile of each measured slice there), BENCH_ONLY=certgate (skip the peers), BENCH_SCALE=0
 * (skip the scale pair), BENCH_COLD_LEAVES and BENCH_SCALE_LEAVES (leaves minted per list,
 * default 8,000 per second of warm-up and measurement), DATABASE_URL (certgate uses it instead of
 * its own embedded PostgreSQL), BENCH_WITHOUT (above).
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon, { type Result } from 'autocannon';
import pg from 'pg';
import { createCa, type Credentials } from '../src/certs/certs-service.js';
import { parseWithout, type Mechanism } from '../src/lib/without.js';
import { createLeafMinter, type LeafMinter } from './leaves.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const DURATION = Number(env.BENCH_DURATION ?? 10);
const ROUNDS = Math.max(1, Number(env.BENCH_ROUNDS ?? 2));
const WARMUP = Number(env.BENCH_WARMUP ?? 2);
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 32);
const ONLY_CERTGATE = env.BENCH_ONLY === 'certgate';
const SCALE = env.BENCH_SCALE !== '0';
const WITHOUT = [...parseWithout(env.BENCH_WITHOUT, 'BENCH_WITHOUT')];
const VERIFIER_TOKEN = 'bench-verifier-token-0123456789';
const ADMIN_PASSWORD = 'bench-management-pass';
const TENANT_PASS = 'bench-tenant-pass';
const AUTH_PATH = '/verifier/v1/authenticate';

const MAIN_DEVICES = 1_000;
const SMALL_DEVICES = 10;
const LARGE_DEVICES = 100_000;
const LARGE_CAS = 1_000;
/**
 * Enough distinct leaves that no cold run sees one twice up to 8,000 req/s, for the whole time a
 * target is loaded (checked and reported).
 */
const LEAVES_PER_RUN = 8_000 * (WARMUP + DURATION);
const COLD_LEAVES = Number(env.BENCH_COLD_LEAVES ?? LEAVES_PER_RUN);
const SCALE_LEAVES = Number(env.BENCH_SCALE_LEAVES ?? LEAVES_PER_RUN);

/** The target each mechanism can change (see the top of this file). */
const MECHANISM_TARGET: Record<Mechanism, 'warm' | 'cold'> = {
  'decision-cache': 'warm',
  'credential-index': 'cold',
};

const deviceName = (i: number) => `d${String(i).padStart(6, '0')}`;
const log = (m: string) => process.stderr.write(`# ${m}\n`);

// ---------------------------------------------------------------------------------------------
// Child processes

interface Child {
  address: string;
  proc: ChildProcess;
  stop(): Promise<void>;
  /** Asks the child for a message and waits for the reply of the given type. */
  request(message: object, reply: string): Promise<void>;
}

async function startChild(script: string, args: string[], childEnv: NodeJS.ProcessEnv, stdout: 'inherit' | number = 'inherit'): Promise<Child> {
  const proc = fork(path.join(here, script), args, {
    execArgv: ['--import', 'tsx'],
    env: childEnv,
    stdio: ['ignore', stdout, 'inherit', 'ipc'],
  });
  const address = await new Promise<string>((resolve, reject) => {
    proc.once('message', (m: { ready?: boolean; address?: string }) => (m.ready ? resolve(m.address!) : reject(new Error('bad message'))));
    proc.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was ready`)));
  });
  return {
    address,
    proc,
    request: (message, reply) =>
      new Promise<void>((resolve) => {
        const on = (m: { type?: string }) => {
          if (m.type !== reply) return;
          proc.off('message', on);
          resolve();
        };
        proc.on('message', on);
        proc.send(message);
      }),
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// CPU accounting: who used the machine during a run (this client, the server process, its
// database processes, anything else), from /proc, in % of one CPU.

interface ProcSample {
  ppid: number;
  ticks: number;
  name: string;
}

/**
 * CPU ticks of a process's threads by thread name: its main thread (whose id is the process id)
 * as `main`, libuv's thread pool, V8's helper threads (garbage collection, compilation) and so on.
 */
async function threadTicks(pid: number | undefined): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (pid === undefined) return out;
  let tids: string[] = [];
  try {
    tids = await fs.readdir(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = await fs.readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const name = Number(tid) === pid ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).trim();
      out.set(name, (out.get(name) ?? 0) + Number(f[11]) + Number(f[12]));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

async function procSnapshot(): Promise<Map<number, ProcSample>> {
  const out = new Map<number, ProcSample>();
  let entries: string[] = [];
  try {
    entries = await fs.readdir('/proc');
  } catch {
    return out;
  }
  await Promise.all(
    entries
      .filter((e) => /^\d+$/.test(e))
      .map(async (e) => {
        try {
          const stat = await fs.readFile(`/proc/${e}/stat`, 'utf8');
          const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
          const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
          out.set(Number(e), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]), name });
        } catch {
          // the process ended meanwhile
        }
      }),
  );
  return out;
}

const TICKS_PER_SECOND = 100;

interface CpuTicks {
  client: number;
  server: number;
  /** The server's threads by name; `main` (its event loop) is what bounds a Node server's throughput. */
  serverThreads: Map<string, number>;
  database: number;
  other: number;
  others: Map<string, number>;
}

const noTicks = (): CpuTicks => ({ client: 0, server: 0, serverThreads: new Map(), database: 0, other: 0, others: new Map() });

/** Adds the CPU ticks used between two snapshots to `into`, by who used them. */
function addCpu(into: CpuTicks, before: Map<number, ProcSample>, after: Map<number, ProcSample>, serverPid: number | undefined): void {
  const isUnder = (pid: number, root: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 20; hops++) {
      if (p === root) return true;
      p = after.get(p)?.ppid ?? before.get(p)?.ppid ?? 0;
    }
    return false;
  };
  for (const [pid, a] of after) {
    const used = a.ticks - (before.get(pid)?.ticks ?? 0);
    if (used <= 0) continue;
    if (pid === process.pid) into.client += used;
    else if (serverPid !== undefined && pid === serverPid) into.server += used;
    else if (serverPid !== undefined && isUnder(pid, serverPid)) into.database += used;
    else if (isUnder(pid, process.pid)) into.database += used;
    else {
      into.other += used;
      into.others.set(a.name, (into.others.get(a.name) ?? 0) + used);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Load

/** Bodies handed out one per request; `reused` counts how often the list wrapped around. */
class BodySource {
  #i = 0;
  reused = 0;
  constructor(readonly bodies: string[]) {}
  next(): string {
    if (this.#i >= this.bodies.length) {
      this.#i = 0;
      this.reused++;
    }
    return this.bodies[this.#i++]!;
  }
}

interface Target {
  label: string;
  address: string;
  /** One body for every request, or a new one per request. */
  source: BodySource | string;
  child: Child;
  /** Name of the CPU profile certgate writes for this target's slices (BENCH_PROFILE). */
  profile?: string;
}

interface Measured {
  label: string;
  seconds: number;
  requests: number;
  rps: number;
  /** Request-weighted over the rounds (autocannon's per-round percentiles). */
  p50: number;
  p99: number;
  mean: number;
  notAllowed: number;
  errors: number;
  reused: number;
  cpu: CpuTicks;
  /** Server CPU time per request, µs (all its threads). */
  serverUs: number;
  transactions?: number;
}

/** Transactions the server's database committed (each autocommitted statement is one). */
let countTransactions: (() => Promise<number>) | undefined;

const HEADERS = { 'content-type': 'application/json', authorization: `Bearer ${VERIFIER_TOKEN}` };

/** One autocannon run against the target; `onBody` sees every answer. */
function fire(t: Target, seconds: number, onAnswer: (status: number, body: string) => void): Promise<Result> {
  const source = t.source;
  return autocannon({
    url: `${t.address}${AUTH_PATH}`,
    connections: CONNECTIONS,
    pipelining: 1,
    duration: seconds,
    timeout: 30,
    requests: [
      {
        method: 'POST',
        path: AUTH_PATH,
        headers: HEADERS,
        ...(typeof source === 'string' ? { body: source } : { setupRequest: (req) => ({ ...req, body: source.next() }) }),
        onResponse: onAnswer,
      },
    ],
  });
}

/**
 * Warms every target up, then measures them in ROUNDS rounds of DURATION / ROUNDS seconds,
 * visiting them in turn within each round.
 */
async function measure(targets: Target[]): Promise<Measured[]> {
  const ignore = () => {};
  for (const t of targets) if (WARMUP > 0) await fire(t, WARMUP, ignore);
  const slice = DURATION / ROUNDS;
  const out = targets.map(
    (t): Measured => ({
      label: t.label,
      seconds: 0,
      requests: 0,
      rps: 0,
      p50: 0,
      p99: 0,
      mean: 0,
      notAllowed: 0,
      errors: 0,
      reused: 0,
      cpu: noTicks(),
      serverUs: 0,
    }),
  );
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [i, t] of targets.entries()) {
      const m = out[i]!;
      const reusedBefore = typeof t.source === 'string' ? 0 : t.source.reused;
      const profiling = Boolean(t.profile && env.BENCH_PROFILE);
      if (profiling) await t.child.request({ type: 'profile-start' }, 'profile-started');
      const tx0 = t.profile && countTransactions ? await countTransactions() : undefined;
      const before = await procSnapshot();
      const threadsBefore = await threadTicks(t.child.proc.pid);
      const r: Result = await fire(t, slice, (status, body) => {
        if (status !== 200 || !body.includes('"result":"allow"')) m.notAllowed++;
      });
      for (const [name, ticks] of await threadTicks(t.child.proc.pid)) {
        m.cpu.serverThreads.set(name, (m.cpu.serverThreads.get(name) ?? 0) + ticks - (threadsBefore.get(name) ?? 0));
      }
      addCpu(m.cpu, before, await procSnapshot(), t.child.proc.pid);
      if (tx0 !== undefined) m.transactions = (m.transactions ?? 0) + (await countTransactions!()) - tx0;
      if (profiling) await t.child.request({ type: 'profile-stop', name: `${t.profile}-r${round}` }, 'profile-stopped');
      const n = r['2xx'] + r.non2xx;
      m.p50 += r.latency.p50 * n;
      m.p99 += r.latency.p99 * n;
      m.mean += r.latency.mean * n;
      m.requests += n;
      m.seconds += slice;
      m.errors += r.errors + r.timeouts;
      m.reused += typeof t.source === 'string' ? 0 : t.source.reused - reusedBefore;
    }
  }
  for (const m of out) {
    const n = Math.max(1, m.requests);
    m.p50 /= n;
    m.p99 /= n;
    m.mean /= n;
    m.rps = m.requests / m.seconds;
    m.serverUs = ((m.cpu.server / TICKS_PER_SECOND) * 1e6) / n;
    report(m);
  }
  return out;
}

function report(m: Measured): void {
  const pct = (ticks: number) => Math.round((100 * ticks) / TICKS_PER_SECOND / m.seconds);
  const others = [...m.cpu.others]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .filter(([, t]) => pct(t) > 0)
    .map(([name, t]) => `${name} ${pct(t)}`)
    .join(', ');
  const main = m.cpu.serverThreads.get('main') ?? 0;
  const mainUs = ((main / TICKS_PER_SECOND) * 1e6) / Math.max(1, m.requests);
  const threads = [...m.cpu.serverThreads]
    .filter(([name, t]) => name !== 'main' && pct(t) > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([name, t]) => `${name} ${pct(t)}`)
    .join(', ');
  log(
    `${m.label.padEnd(30)} ${m.rps.toFixed(0).padStart(6)} req/s  p50 ${m.p50.toFixed(1)} ms  p99 ${m.p99.toFixed(1)} ms  mean ${m.mean.toFixed(2)} ms` +
      `  (${m.requests} requests${m.notAllowed ? `, ${m.notAllowed} not allowed` : ''}${m.errors ? `, ${m.errors} errors` : ''}` +
      `${m.reused ? `, leaf list reused ${m.reused}x` : ''})` +
      `\n#   CPU, % of one core: server ${pct(m.cpu.server)} (${m.serverUs.toFixed(0)} µs per request; main thread ${pct(main)}, ${mainUs.toFixed(0)} µs${threads ? `; ${threads}` : ''}), its database ${pct(m.cpu.database)}, ` +
      `client ${pct(m.cpu.client)}, other processes ${pct(m.cpu.other)}${others ? ` (${others})` : ''}` +
      `${m.transactions !== undefined ? `; database transactions per request ${(m.transactions / Math.max(1, m.requests)).toFixed(3)}` : ''}`,
  );
}

// ---------------------------------------------------------------------------------------------
// certgate setup

async function api(base: string, method: string, url: string, auth: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${base}${url}`, {
    method,
    headers: { authorization: auth, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

const basic = (login: string, pass: string) => `Basic ${Buffer.from(`${login}:${pass}`).toString('base64')}`;

interface BenchTenant {
  id: string;
  auth: string;
}

async function createTenant(base: string, id: string, ca: Credentials): Promise<BenchTenant> {
  await api(base, 'POST', '/tenant/tenants', basic('management/admin', ADMIN_PASSWORD), {
    id,
    company: `${id} Inc.`,
    domain: `${id}.example.com`,
    adminName: 'admin',
    adminPass: TENANT_PASS,
  });
  const auth = basic(`${id}/admin`, TENANT_PASS);
  await api(base, 'POST', `/tenant/tenants/${id}/trusted-certificates`, auth, {
    name: 'bench device CA',
    status: 'ENABLED',
    autoRegistrationEnabled: true,
    certInPemFormat: ca.certPem,
  });
  return { id, auth };
}

/** Devices in one statement, then the change event every certgate process listens to. */
async function insertDevices(db: pg.Client, tenantId: string, count: number): Promise<void> {
  await db.query(
    `INSERT INTO "Device" (id, "tenantId", name, "deviceProfileId")
     SELECT gen_random_uuid(), $1, 'd' || lpad(i::text, 6, '0'),
            (SELECT id FROM "DeviceProfile" WHERE "tenantId" = $1 AND "isDefault")
       FROM generate_series(0, $2::int - 1) AS i`,
    [tenantId, count],
  );
}

/** One API-listed credential per device (their certificates are never presented in the bench). */
async function insertCredentials(db: pg.Client, tenantId: string, certDer: Uint8Array): Promise<void> {
  await db.query(
    `INSERT INTO "DeviceCredential" ("credentialsId", "tenantId", "deviceId", "certDer", subject, issuer,
                                     "serialNumber", "notBefore", "notAfter")
     SELECT encode(sha256(convert_to(d.id::text, 'UTF8')), 'hex'), d."tenantId", d.id, $2, 'CN=' || d.name,
            'CN=bench', '1', now() - interval '1 day', now() + interval '365 days'
       FROM "Device" d WHERE d."tenantId" = $1`,
    [tenantId, Buffer.from(certDer)],
  );
}

async function announce(db: pg.Client, tenantId: string, what: string[]): Promise<void> {
  for (const w of what) {
    await db.query('SELECT pg_notify($1, $2)', ['certgate_changes', JSON.stringify({ type: 'invalidate', tenantId, what: w })]);
  }
}

function databaseUrlOf(dataDir: string): Promise<string> {
  if (env.DATABASE_URL) return Promise.resolve(env.DATABASE_URL);
  return fs.readFile(path.join(dataDir, 'embedded-postgres.json'), 'utf8').then((t) => {
    const s = JSON.parse(t) as { port: number; password: string };
    return `postgresql://postgres:${encodeURIComponent(s.password)}@127.0.0.1:${s.port}/certgate`;
  });
}

/** Never-seen leaves alone, as a clustered broker sends them: base64 of the DER on one line. */
function leafOnlyBodies(minter: LeafMinter, count: number, device: (i: number) => string): string[] {
  const out: string[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const name = device(i);
    const b64 = minter.mint(name).replace(/-----(BEGIN|END) CERTIFICATE-----|\s+/g, '');
    out[i] = JSON.stringify({ clientId: name, certificateChain: b64 });
  }
  return out;
}

function coldBodies(minter: LeafMinter, ca: Credentials, count: number, device: (i: number) => string): string[] {
  const out: string[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const name = device(i);
    out[i] = JSON.stringify({ clientId: name, certificateChain: [minter.mint(name), ca.certPem] });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

async function machine(): Promise<string> {
  const cpus = os.cpus();
  return [
    `date ${new Date().toISOString()}`,
    `node ${process.version}, ${os.platform()} ${os.release()}, ${os.availableParallelism()} CPUs (${cpus[0]?.model ?? 'unknown'}), load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    `autocannon: ${CONNECTIONS} connections, pipelining 1, 127.0.0.1; per target ${WARMUP} s warm-up, then ${DURATION} s measured in ${ROUNDS} round(s)`,
  ].join('\n# ');
}

async function main(): Promise<void> {
  log(await machine());
  const started = Date.now();
  const suffix = Math.random().toString(36).slice(2, 8);

  // Certificates: one CA per tenant, leaves minted from one template each.
  const mainCa = await createCa({ cn: `bench main CA ${suffix}` });
  const smallCa = await createCa({ cn: `bench small CA ${suffix}` });
  const largeCa = await createCa({ cn: `bench large CA ${suffix}` });
  const mainMinter = await createLeafMinter(mainCa, 7);
  const warmBody = JSON.stringify({ clientId: deviceName(0), certificateChain: [mainMinter.mint(deviceName(0)), mainCa.certPem] });
  const coldList = coldBodies(mainMinter, mainCa, COLD_LEAVES, (i) => deviceName(i % MAIN_DEVICES));
  log(`${COLD_LEAVES} cold leaves minted (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  const leafOnlyList = leafOnlyBodies(mainMinter, COLD_LEAVES, (i) => deviceName(i % MAIN_DEVICES));
  log(`${COLD_LEAVES} leaf-only bodies minted (${((Date.now() - started) / 1000).toFixed(1)} s)`);

  const children: Child[] = [];
  const targets: Target[] = [];
  if (!ONLY_CERTGATE) {
    const hello = await startChild('peer-server.ts', ['hello'], env);
    const x509 = await startChild('peer-server.ts', ['x509'], env);
    children.push(hello, x509);
    targets.push(
      { label: 'hello-world (fastify)', address: hello.address, source: warmBody, child: hello },
      { label: 'plain node X509 check, cold', address: x509.address, source: new BodySource(coldList), child: x509 },
    );
  }

  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-bench-'));
  await fs.chmod(dataDir, 0o755);
  // At info and below every decision is a log line: they go to a file, as in production.
  const logLevel = env.BENCH_LOG_LEVEL ?? 'warn';
  const logFile = ['info', 'debug', 'trace'].includes(logLevel) ? path.join(dataDir, 'certgate.log') : undefined;
  const logHandle = logFile ? await fs.open(logFile, 'w') : undefined;
  const startCertgate = (more: NodeJS.ProcessEnv = {}) =>
    startChild(
      'certgate-server.ts',
      [],
      {
        ...env,
        HTTP_HOST: '127.0.0.1',
        HTTP_PORT: '0',
        // The MQTT listener is not measured here: any free port, so that servers side by side can start.
        MQTT_TLS_HOST: '127.0.0.1',
        MQTT_TLS_PORT: '0',
        DATA_DIR: dataDir,
        LOG_LEVEL: logLevel,
        MANAGEMENT_ADMIN_PASSWORD: ADMIN_PASSWORD,
        VERIFIER_TOKEN,
        ...(env.BENCH_PROFILE ? { BENCH_PROFILE: path.resolve(env.BENCH_PROFILE) } : {}),
        ...more,
      },
      logHandle?.fd ?? 'inherit',
    );
  const certgate = await startCertgate();
  if (logFile) log(`certgate logs at ${logLevel} to ${logFile}`);
  const databaseUrl = await databaseUrlOf(dataDir);
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  countTransactions = async () =>
    Number((await db.query('SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = current_database()')).rows[0].n);
  const results: Record<string, Measured> = {};
  const buys: Array<{ mechanism: Mechanism; target: string; with: Measured; without: Measured }> = [];
  try {
    const base = certgate.address;
    const main = await createTenant(base, `bench-${suffix}`, mainCa);
    await insertDevices(db, main.id, MAIN_DEVICES);
    await db.query('VACUUM ANALYZE "Device"');
    await announce(db, main.id, ['devices']);

    // The warm chain's leaf has connected before (an observed credential of its device).
    const first = (await api(base, 'POST', AUTH_PATH, `Bearer ${VERIFIER_TOKEN}`, JSON.parse(warmBody))) as { result: string; reason?: string };
    if (first.result !== 'allow') throw new Error(`warm chain denied: ${first.reason}`);
    targets.push(
      { label: 'certgate warm (known leaf)', address: base, source: warmBody, child: certgate, profile: 'warm' },
      { label: 'certgate cold (new leaf)', address: base, source: new BodySource(coldList), child: certgate, profile: 'cold' },
      { label: 'certgate cold, leaf alone (base64 DER, as EMQX and VerneMQ send it)', address: base, source: new BodySource(leafOnlyList), child: certgate, profile: 'cold-leaf' },
    );
    const measured = await measure(targets);
    const [warm, cold, leafOnly] = measured.slice(-3);
    Object.assign(results, ONLY_CERTGATE ? {} : { hello: measured[0], x509: measured[1] }, { warm, cold, leafOnly });

    // The scale pair's tenants, and their leaves' minters.
    if (SCALE) {
      const smallMinter = await createLeafMinter(smallCa, 7);
      const largeMinter = await createLeafMinter(largeCa, 7);
      const small = await createTenant(base, `small-${suffix}`, smallCa);
      await insertDevices(db, small.id, SMALL_DEVICES);
      await announce(db, small.id, ['devices']);
      const large = await createTenant(base, `large-${suffix}`, largeCa);
      const t0 = Date.now();
      await insertDevices(db, large.id, LARGE_DEVICES);
      await insertCredentials(db, large.id, mainCa.certDer);
      const others: Credentials[] = [];
      for (let i = 1; i < LARGE_CAS; i++) others.push(await createCa({ cn: `bench large CA ${suffix} #${i}`, org: `Fleet ${i}` }));
      await api(base, 'POST', `/tenant/tenants/${large.id}/trusted-certificates/bulk`, large.auth, {
        certificates: others.map((c, i) => ({ name: `fleet CA ${i + 1}`, status: 'ENABLED', autoRegistrationEnabled: true, certInPemFormat: c.certPem })),
      });
      // Fresh statistics now, so autovacuum does not start in the middle of a measurement.
      await db.query('VACUUM ANALYZE "Device", "DeviceCredential", "TrustedCertificate", "AuthEvent"');
      await announce(db, large.id, ['devices', 'credentials']);
      log(`large tenant: ${LARGE_DEVICES} devices, ${LARGE_DEVICES} credentials, ${LARGE_CAS} trusted CAs (${((Date.now() - t0) / 1000).toFixed(1)} s)`);

      const smallCold = new BodySource(coldBodies(smallMinter, smallCa, SCALE_LEAVES, (i) => deviceName(i % SMALL_DEVICES)));
      // Spread over the whole fleet: each leaf belongs to a different device.
      const largeCold = new BodySource(coldBodies(largeMinter, largeCa, SCALE_LEAVES, (i) => deviceName((i * 7919) % LARGE_DEVICES)));
      [results.small, results.large] = await measure([
        { label: 'certgate cold, 10 devices', address: base, source: smallCold, child: certgate, profile: 'cold-small' },
        { label: 'certgate cold, 100k devices/1k CAs', address: base, source: largeCold, child: certgate, profile: 'cold-large' },
      ]);
    }

    // What each mechanism buys: a server as built and one without it, both fresh, side by side.
    for (const mechanism of WITHOUT) {
      const target = MECHANISM_TARGET[mechanism];
      // New leaves for both servers from one list, each used once: a leaf one server saw is a
      // credential in the database the other shares.
      let source: BodySource | string = warmBody;
      if (target === 'cold') source = new BodySource(coldBodies(mainMinter, mainCa, 2 * COLD_LEAVES, (i) => deviceName(i % MAIN_DEVICES)));
      // On the first server's database; the MQTT listener (idle here) in the server's own process.
      const pairEnv = { DATABASE_URL: databaseUrl, MQTT_WORKERS: '1' };
      const withIt = await startCertgate({ ...pairEnv, CERTGATE_WITHOUT: '' });
      const withoutIt = await startCertgate({ ...pairEnv, CERTGATE_WITHOUT: mechanism });
      try {
        const [a, b] = await measure([
          { label: `certgate ${target}, as built`, address: withIt.address, source, child: withIt },
          { label: `certgate ${target}, without ${mechanism}`, address: withoutIt.address, source, child: withoutIt },
        ]);
        buys.push({ mechanism, target, with: a!, without: b! });
      } finally {
        await new Promise((r) => setTimeout(r, 1_000));
        await withIt.stop();
        await withoutIt.stop();
      }
    }
  } finally {
    // Let answers still in flight when the load stopped finish before the servers go.
    await new Promise((r) => setTimeout(r, 1_000));
    await db.end();
    await certgate.stop();
    for (const c of children) await c.stop();
    if (logFile) {
      const text = await fs.readFile(logFile, 'utf8');
      log(`certgate log: ${text.split('\n').filter((l) => l.includes('"auth decision"')).length} "auth decision" lines`);
      await logHandle!.close();
    }
    await fs.rm(dataDir, { recursive: true, force: true }).catch(() => {});
  }

  const line = (m: Measured | undefined) =>
    m ? `${m.rps.toFixed(0)} req/s p50=${m.p50.toFixed(1)}ms p99=${m.p99.toFixed(1)}ms mean=${m.mean.toFixed(2)}ms` : 'not run';
  const out: string[] = [];
  out.push(`hello_world: ${line(results.hello)}`);
  out.push(`plain_node_x509_cold: ${line(results.x509)}`);
  out.push(`certgate_warm: ${line(results.warm)}`);
  out.push(`certgate_cold: ${line(results.cold)}`);
  if (results.leafOnly) out.push(`certgate_cold_leaf_only: ${line(results.leafOnly)}`);
  if (results.hello && results.warm) out.push(`warm_ratio=${(results.warm.rps / results.hello.rps).toFixed(2)} (goal >= 0.5)`);
  if (results.x509 && results.cold) out.push(`cold_ratio=${(results.cold.rps / results.x509.rps).toFixed(2)} (goal >= 1.0)`);
  if (results.small && results.large) {
    out.push(`certgate_cold_10_devices: ${line(results.small)}`);
    out.push(`certgate_cold_100k_devices_1k_cas: ${line(results.large)}`);
    out.push(`scale_ratio=${(results.large.mean / results.small.mean).toFixed(2)} (mean cold latency, 100k devices / 10 devices; goal <= 1.2)`);
  }
  for (const b of buys) {
    const pct = (100 * (b.with.rps / b.without.rps - 1)).toFixed(1);
    // Server CPU per request moves less with other work on the machine than req/s does.
    const cpu = `server CPU ${b.with.serverUs.toFixed(0)} against ${b.without.serverUs.toFixed(0)} µs per request`;
    out.push(`buys_${b.mechanism.replaceAll('-', '_')}=${pct}% (${b.target}: ${line(b.with)} as built; ${line(b.without)} without; ${cpu})`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

await main();
