/**
 * `npm run bench:mqtt`: certgate's mTLS MQTT listener against mosquitto, in one run.
 *
 * Both brokers get the same server certificate and the same device certificates, on 127.0.0.1:
 *   1. mosquitto (Debian package): a TLS listener with `require_certificate true`,
 *      `use_identity_as_username true`, `set_tcp_nodelay true`, cafile = the device CA;
 *   2. certgate: the real server (startServer, `npm start`'s mode) with its own embedded
 *      PostgreSQL (or DATABASE_URL), a tenant trusting the device CA and every device registered,
 *      so each CONNECT is resolved to tenant and device by the verifier.
 * The same load generator drives both: BENCH_GENERATORS processes running BENCH_PARALLEL loops in
 * all, each loop doing TLS handshake with a client certificate, CONNECT, CONNACK, DISCONNECT, then
 * the next connection. The generator is bench/mqtt-load.c (epoll and OpenSSL, built here with `cc`)
 * when it builds, else bench/mqtt-load.ts (raw `tls.connect`): on a small machine the generator
 * shares the cores with the brokers, and the C one takes about half the CPU per connection. Both brokers run side by side (idle when not
 * measured); after a warm-up of each, BENCH_ROUNDS rounds each measure one period of mosquitto and
 * one of certgate, alternating which goes first, so a machine whose load changes over the run
 * (other work on it) weighs on both alike.
 *
 * Prints connect_ratio = certgate CONNACK/s ÷ mosquitto CONNACK/s over all rounds (and per round),
 * each side's CONNACK latency (p50/p99, TLS handshake included) and server CPU per connection
 * (utime + stime from /proc/<pid>/stat of the broker's processes before and after each period; for
 * certgate every Node process of the server, PostgreSQL reported apart), the generator's own CPU,
 * and the CPU that other processes of the machine took meanwhile.
 *
 * Then message throughput, on the same two brokers with the same certificates, from the same
 * client: bench/mqtt-msg.c (epoll and OpenSSL, built here with `cc`), BENCH_MSG_GENERATORS
 * processes sharing the connections, each writing what one wake-up produced in one TLS write. All
 * devices are in one tenant whose default profile allows `bench/#` to publish and subscribe;
 * MQTT 3.1.1, clean sessions, QoS 1 both ways, both brokers with the same outbound limits
 * (mosquitto's max_inflight_messages / max_queued_messages = certgate's MQTT_MAX_INFLIGHT /
 * MQTT_MAX_QUEUED, 20 / 1000, both brokers' defaults):
 *   fanin:  BENCH_MSG_CLIENTS (100) publishers to one subscriber of the topic;
 *   fanout: one publisher to BENCH_MSG_CLIENTS subscribers of the topic.
 * Each publisher keeps BENCH_MSG_WINDOW (20) PUBLISH packets unacknowledged, sending the next as
 * each PUBACK comes; subscribers acknowledge every message at once. Per round and broker the
 * clients connect and subscribe, publish for BENCH_MSG_WARMUP s, then for BENCH_MSG_DURATION s
 * measured, then disconnect; rounds alternate which broker goes first, as above. Prints each side's
 * deliveries per second (PUBLISH packets received by the subscribers, summed) with the PUBLISH
 * packets sent per second, server and client CPU per delivery and the other load, then
 * msg_ratio_fanin and msg_ratio_fanout = certgate deliveries/s ÷ mosquitto deliveries/s. In fan-in
 * the publishers offer far more than one subscriber can take through its 20 in-flight messages:
 * both brokers drop what does not fit the subscriber's queue, and the deliveries per second follow
 * how soon the broker turns the subscriber's PUBACKs into the next PUBLISH packets while flooded.
 *
 * Environment: BENCH_DURATION (s per period, default 10), BENCH_ROUNDS (3), BENCH_WARMUP (s, 10),
 * BENCH_PARALLEL (20), BENCH_GENERATORS (2), BENCH_GENERATOR (`c` or `node`; default C when it
 * builds), BENCH_DEVICES (1000, a multiple of BENCH_PARALLEL), BENCH_ONLY (`mosquitto` or
 * `certgate`), BENCH_LOG_LEVEL (certgate's LOG_LEVEL, default warn), MQTT_WORKERS (passed to
 * certgate; unset: certgate's default), DATABASE_URL (certgate uses it instead of its own embedded
 * PostgreSQL), MOSQUITTO (path of the mosquitto binary), BENCH_PROFILE=<dir> (every certgate Node
 * process writes a V8 CPU profile of its life there), BENCH_BASELINE=<dir> (another checkout of
 * certgate, with its node_modules and src/generated, measured in the same run as `baseline`:
 * connect_ratio_baseline, msg_ratio_*_baseline), BENCH_CONNECT=0 (no connection runs).
 * Messages: BENCH_MSG (0: none; `fanin` or `fanout`: that one only), BENCH_MSG_DURATION (s, 5),
 * BENCH_MSG_WARMUP (s, 2), BENCH_MSG_ROUNDS (2), BENCH_MSG_CLIENTS (100), BENCH_MSG_WINDOW (20),
 * BENCH_MSG_PAYLOAD (bytes, 64), BENCH_MSG_INFLIGHT (20) and BENCH_MSG_QUEUED (1000) for both
 * brokers, BENCH_MSG_GENERATORS (2). With the defaults the whole run takes about three minutes.
 */
import { execFile, fork, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { createCa, createDevice, createServer, type Credentials } from '../src/certs/certs-service.js';
import type { LoadDevice, RunMessage, RunResult } from './mqtt-load.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const DURATION = Number(env.BENCH_DURATION ?? 10);
const WARMUP = Number(env.BENCH_WARMUP ?? 10);
const ROUNDS = Math.max(1, Number(env.BENCH_ROUNDS ?? 3));
const PARALLEL = Number(env.BENCH_PARALLEL ?? 20);
const GENERATORS = Math.max(1, Math.min(PARALLEL, Number(env.BENCH_GENERATORS ?? 2)));
const DEVICES = Number(env.BENCH_DEVICES ?? 1_000);
const ONLY = env.BENCH_ONLY;
const MOSQUITTO = env.MOSQUITTO ?? 'mosquitto';
const CONNECTS = env.BENCH_CONNECT !== '0';
const MSG = env.BENCH_MSG !== '0';
const MSG_DURATION = Number(env.BENCH_MSG_DURATION ?? 5);
const MSG_WARMUP = Number(env.BENCH_MSG_WARMUP ?? 2);
const MSG_ROUNDS = Math.max(1, Number(env.BENCH_MSG_ROUNDS ?? 2));
const MSG_CLIENTS = Number(env.BENCH_MSG_CLIENTS ?? 100);
const MSG_WINDOW = Math.max(1, Number(env.BENCH_MSG_WINDOW ?? 20));
/** Both brokers' QoS 1/2 messages in flight to each client (mosquitto's max_inflight_messages). */
const MSG_INFLIGHT = Number(env.BENCH_MSG_INFLIGHT ?? 20);
const MSG_QUEUED = Number(env.BENCH_MSG_QUEUED ?? 1_000);
const MSG_PAYLOAD = Number(env.BENCH_MSG_PAYLOAD ?? 64);
const MSG_PROCESSES = Math.max(1, Number(env.BENCH_MSG_GENERATORS ?? 2));
const MSG_TOPIC_ROOT = 'bench';
const ADMIN_PASSWORD = 'bench-management-pass';
const TENANT_PASS = 'bench-tenant-pass';
const VERIFIER_TOKEN = 'bench-verifier-token-0123456789';
const TICK_MS = 1000 / 100; // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s on Linux

const log = (m: string) => process.stderr.write(`# ${m}\n`);
const deviceName = (i: number) => `d${String(i).padStart(6, '0')}`;
const execFileAsync = promisify(execFile);

if (DEVICES % PARALLEL !== 0) throw new Error('BENCH_DEVICES must be a multiple of BENCH_PARALLEL');
if (MSG && MSG_CLIENTS + 1 > DEVICES) throw new Error('BENCH_MSG_CLIENTS must be below BENCH_DEVICES');

// ---------------------------------------------------------------------------------------------
// Processes and their CPU time

/** utime + stime of one process, in ms; 0 once it is gone. */
async function cpuMs(pid: number): Promise<number> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  if (!stat) return 0;
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

/** The process and all its descendants, with their command names. */
async function processTree(pid: number): Promise<Array<{ pid: number; comm: string }>> {
  const out: Array<{ pid: number; comm: string }> = [];
  const walk = async (p: number): Promise<void> => {
    const comm = (await fs.readFile(`/proc/${p}/comm`, 'utf8').catch(() => '')).trim();
    if (!comm) return;
    out.push({ pid: p, comm });
    const tasks = await fs.readdir(`/proc/${p}/task`).catch(() => [] as string[]);
    for (const t of tasks) {
      const children = await fs.readFile(`/proc/${p}/task/${t}/children`, 'utf8').catch(() => '');
      for (const c of children.trim().split(/\s+/).filter(Boolean)) await walk(Number(c));
    }
  };
  await walk(pid);
  return out;
}

async function cpuOf(pids: number[]): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const p of pids) out.set(p, await cpuMs(p));
  return out;
}

/** CPU used between two samples by the processes alive at both (a PostgreSQL backend may end). */
function used(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, ms] of after) if (ms > 0) total += ms - (before.get(pid) ?? 0);
  return total;
}

/** CPU time the whole machine spent busy, in ms (all CPUs). */
async function machineBusyMs(): Promise<number> {
  const line = (await fs.readFile('/proc/stat', 'utf8')).split('\n')[0]!;
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return (user! + nice! + system! + irq! + softirq! + steal!) * TICK_MS;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on port ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stopProcess(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once('exit', () => resolve());
    proc.kill('SIGTERM');
    setTimeout(() => proc.kill('SIGKILL'), 15_000).unref();
  });
}

// ---------------------------------------------------------------------------------------------
// Load generators

interface Generators {
  kind: 'c' | 'node';
  pids: number[];
  run(port: number, durationMs: number): Promise<RunResult>;
  stop(): Promise<void>;
}

/** One generator process: runs its share of the loops against a port when asked. */
interface Generator {
  pid: number;
  run(msg: RunMessage): Promise<RunResult>;
  stop(): Promise<void>;
}

/**
 * bench/mqtt-load.c built for this machine, when a C compiler and OpenSSL's headers are there
 * (BENCH_GENERATOR=c insists, =node skips it): its TLS client costs about half the CPU of Node's.
 */
async function buildNativeGenerator(dir: string): Promise<string | undefined> {
  if (env.BENCH_GENERATOR === 'node') return undefined;
  try {
    return await buildC(dir, 'mqtt-load');
  } catch (err) {
    if (env.BENCH_GENERATOR === 'c') throw err;
    log(`bench/mqtt-load.c not built (${(err as Error).message.split('\n')[0]}); the Node generator is used`);
    return undefined;
  }
}

/** bench/<name>.c built into `dir`; the path of the binary. */
async function buildC(dir: string, name: string): Promise<string> {
  const out = path.join(dir, name);
  await execFileAsync(env.CC ?? 'cc', ['-O2', '-o', out, path.join(here, `${name}.c`), '-lssl', '-lcrypto']);
  return out;
}

/** The device list the C clients read: "<client id> <PEM file>" a line; written once. */
async function deviceList(devices: LoadDevice[], dir: string): Promise<string> {
  const listFile = path.join(dir, 'devices.txt');
  if (await fs.stat(listFile).then(() => true, () => false)) return listFile;
  const lines: string[] = [];
  await fs.mkdir(path.join(dir, 'devices'));
  for (const d of devices) {
    const file = path.join(dir, 'devices', `${d.name}.pem`);
    await fs.writeFile(file, `${d.certPem}${d.keyPem}`, { mode: 0o600 });
    lines.push(`${d.name} ${file}`);
  }
  await fs.writeFile(listFile, `${lines.join('\n')}\n`);
  return listFile;
}

function nativeGenerator(binary: string, listFile: string, msg: Pick<RunMessage, 'concurrency' | 'offset' | 'total'>): Generator {
  const proc = spawn(binary, [listFile, String(msg.concurrency), String(msg.offset), String(msg.total)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = readline.createInterface({ input: proc.stdout });
  const pending: Array<(line: string) => void> = [];
  lines.on('line', (line) => pending.shift()?.(line));
  const line = () => new Promise<string>((resolve) => pending.push(resolve));
  return {
    pid: proc.pid!,
    async run(m) {
      const result = line();
      const latencies = line();
      proc.stdin.write(`run ${m.port} ${m.durationMs}\n`);
      const [, accepted, refused, errors, , , ...why] = (await result).split(' ');
      const lat = (await latencies).split(' ').slice(1).map((us) => Number(us) / 1000);
      const firstError = why.join(' ');
      return {
        type: 'result',
        accepted: Number(accepted),
        refused: Number(refused),
        errors: Number(errors),
        latencies: Float64Array.from(lat),
        ...(firstError !== '-' ? { firstError } : {}),
      };
    },
    stop: async () => {
      proc.stdin.end();
      await stopProcess(proc);
    },
  };
}

async function nodeGenerator(devices: LoadDevice[]): Promise<Generator> {
  const proc = fork(path.join(here, 'mqtt-load.ts'), [], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
  });
  const reply = <T>(type: string) =>
    new Promise<T>((resolve, reject) => {
      const on = (m: { type?: string }) => {
        if (m.type !== type) return;
        proc.off('message', on);
        proc.off('exit', onExit);
        resolve(m as T);
      };
      const onExit = (code: number | null) => reject(new Error(`load generator exited with ${code}`));
      proc.on('message', on);
      proc.once('exit', onExit);
    });
  const ready = reply('ready');
  proc.send({ type: 'devices', devices });
  await ready;
  return {
    pid: proc.pid!,
    run(m) {
      const done = reply<RunResult>('result');
      proc.send(m);
      return done;
    },
    stop: () => stopProcess(proc),
  };
}

async function startGenerators(devices: LoadDevice[], dir: string): Promise<Generators> {
  const binary = await buildNativeGenerator(dir);
  const split = Array.from({ length: GENERATORS }, (_, i) => Math.floor(PARALLEL / GENERATORS) + (i < PARALLEL % GENERATORS ? 1 : 0));
  const offsets = split.map((_, i) => split.slice(0, i).reduce((a, b) => a + b, 0));
  let procs: Generator[];
  if (binary) {
    const listFile = await deviceList(devices, dir);
    procs = split.map((concurrency, i) => nativeGenerator(binary, listFile, { concurrency, offset: offsets[i]!, total: PARALLEL }));
  } else {
    procs = await Promise.all(split.map(() => nodeGenerator(devices)));
  }
  return {
    kind: binary ? 'c' : 'node',
    pids: procs.map((p) => p.pid),
    async run(port, durationMs) {
      const results = await Promise.all(
        procs.map((p, i) => p.run({ type: 'run', port, durationMs, concurrency: split[i]!, offset: offsets[i]!, total: PARALLEL })),
      );
      return {
        type: 'result',
        accepted: results.reduce((n, r) => n + r.accepted, 0),
        refused: results.reduce((n, r) => n + r.refused, 0),
        errors: results.reduce((n, r) => n + r.errors, 0),
        latencies: concat(results.map((r) => r.latencies)),
        ...(results.find((r) => r.firstError) ? { firstError: results.find((r) => r.firstError)!.firstError } : {}),
      };
    },
    stop: async () => {
      await Promise.all(procs.map((p) => p.stop()));
    },
  };
}

function concat(parts: Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Measuring

interface RunningBroker {
  label: string;
  port: number;
  /** Server processes (the main one first), and PostgreSQL's. */
  pids(): Promise<{ server: number[]; database: number[] }>;
  stop(): Promise<void>;
}

interface Period {
  accepted: number;
  refused: number;
  errors: number;
  firstError?: string;
  elapsedMs: number;
  serverCpuMs: number;
  /** Of `serverCpuMs`, the main server process's share (certgate: the API and the workers' relay). */
  mainCpuMs: number;
  databaseCpuMs: number;
  generatorCpuMs: number;
  /** CPU the rest of the machine took during the period. */
  otherCpuMs: number;
  latencies: Float64Array;
}

async function period(broker: RunningBroker, gen: Generators, durationMs: number): Promise<Period> {
  const pids = await broker.pids();
  const sample = async () => ({
    main: await cpuOf(pids.server.slice(0, 1)),
    server: await cpuOf(pids.server),
    db: await cpuOf(pids.database),
    gen: await cpuOf(gen.pids),
    machine: await machineBusyMs(),
  });
  const before = await sample();
  const t0 = performance.now();
  const r = await gen.run(broker.port, durationMs);
  const elapsedMs = performance.now() - t0;
  const after = await sample();
  const server = used(before.server, after.server);
  const db = used(before.db, after.db);
  const generator = used(before.gen, after.gen);
  return {
    accepted: r.accepted,
    refused: r.refused,
    errors: r.errors,
    ...(r.firstError ? { firstError: r.firstError } : {}),
    elapsedMs,
    serverCpuMs: server,
    mainCpuMs: used(before.main, after.main),
    databaseCpuMs: db,
    generatorCpuMs: generator,
    otherCpuMs: Math.max(0, after.machine - before.machine - server - db - generator),
    latencies: r.latencies,
  };
}

interface Summary {
  label: string;
  connacksPerSecond: number;
  perRound: number[];
  p50: number;
  p99: number;
  accepted: number;
  refused: number;
  errors: number;
  firstError?: string;
  /** Per accepted connection, ms. */
  serverCpuMs: number;
  databaseCpuMs: number;
  generatorCpuMs: number;
  /** Cores in use on average while measured. */
  serverCores: number;
  generatorCores: number;
  otherCores: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

function summarize(label: string, periods: Period[]): Summary {
  const total = (f: (p: Period) => number) => periods.reduce((n, p) => n + f(p), 0);
  const accepted = total((p) => p.accepted);
  const ms = total((p) => p.elapsedMs);
  const per = (cpu: number) => cpu / Math.max(1, accepted);
  const sorted = concat(periods.map((p) => p.latencies)).sort();
  const firstError = periods.find((p) => p.firstError)?.firstError;
  return {
    label,
    connacksPerSecond: accepted / (ms / 1000),
    perRound: periods.map((p) => p.accepted / (p.elapsedMs / 1000)),
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    accepted,
    refused: total((p) => p.refused),
    errors: total((p) => p.errors),
    ...(firstError ? { firstError } : {}),
    serverCpuMs: per(total((p) => p.serverCpuMs)),
    databaseCpuMs: per(total((p) => p.databaseCpuMs)),
    generatorCpuMs: per(total((p) => p.generatorCpuMs)),
    serverCores: total((p) => p.serverCpuMs) / ms,
    generatorCores: total((p) => p.generatorCpuMs) / ms,
    otherCores: total((p) => p.otherCpuMs) / ms,
  };
}

function describe(s: Summary, withDatabase: boolean): string {
  return (
    `${s.connacksPerSecond.toFixed(0)} CONNACK/s (rounds: ${s.perRound.map((r) => r.toFixed(0)).join(', ')})` +
    ` p50=${s.p50.toFixed(2)}ms p99=${s.p99.toFixed(2)}ms` +
    ` server_cpu=${s.serverCpuMs.toFixed(3)}ms/conn (${s.serverCores.toFixed(2)} cores)` +
    `${withDatabase ? ` postgres_cpu=${s.databaseCpuMs.toFixed(3)}ms/conn` : ''}` +
    ` generator_cpu=${s.generatorCpuMs.toFixed(3)}ms/conn (${s.generatorCores.toFixed(2)} cores)` +
    ` other_load=${s.otherCores.toFixed(2)} cores` +
    `${s.refused || s.errors ? ` refused=${s.refused} errors=${s.errors}${s.firstError ? ` (${s.firstError})` : ''}` : ''}`
  );
}

/** The main process's share when the server has several processes. */
function pids(p: Period): string {
  return p.mainCpuMs < p.serverCpuMs ? ` (main process ${(p.mainCpuMs / Math.max(1, p.accepted)).toFixed(3)})` : '';
}

// ---------------------------------------------------------------------------------------------
// Message throughput

/** One bench/mqtt-msg.c process: a line asked, a line answered. */
interface MsgClient {
  pid: number;
  ask(line: string): Promise<string>;
  stop(): Promise<void>;
}

function msgClient(binary: string, listFile: string): MsgClient {
  const proc = spawn(binary, [listFile], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: proc.stdout });
  const pending: Array<{ resolve: (line: string) => void; reject: (err: Error) => void }> = [];
  lines.on('line', (line) => pending.shift()?.resolve(line));
  proc.once('exit', (code, signal) => {
    for (const p of pending.splice(0)) p.reject(new Error(`bench/mqtt-msg.c exited with ${signal ?? code}`));
  });
  return {
    pid: proc.pid!,
    ask(line) {
      return new Promise((resolve, reject) => {
        pending.push({ resolve, reject });
        proc.stdin.write(`${line}\n`);
      });
    },
    stop: async () => {
      proc.stdin.end();
      await stopProcess(proc);
    },
  };
}

interface Scenario {
  name: 'fanin' | 'fanout';
  topic: string;
  subscribers: number;
  publishers: number;
}

/** BENCH_MSG=fanin or =fanout runs that one only. */
const SCENARIOS: Scenario[] = (
  [
    { name: 'fanin', topic: `${MSG_TOPIC_ROOT}/fanin`, subscribers: 1, publishers: MSG_CLIENTS },
    { name: 'fanout', topic: `${MSG_TOPIC_ROOT}/fanout`, subscribers: MSG_CLIENTS, publishers: 1 },
  ] as const
).filter((s) => env.BENCH_MSG === undefined || env.BENCH_MSG === '1' || env.BENCH_MSG === s.name);

/** `n` spread over the client processes, the first ones taking one more. */
const share = (n: number, i: number) => Math.floor(n / MSG_PROCESSES) + (i < n % MSG_PROCESSES ? 1 : 0);
const before = (n: number, i: number) => Array.from({ length: i }, (_, j) => share(n, j)).reduce((a, b) => a + b, 0);

interface MsgPeriod {
  published: number;
  acknowledged: number;
  /** PUBLISH packets the subscribers received (deliveries, summed over subscribers). */
  received: number;
  errors: number;
  firstError?: string;
  /** The measured period each client process counted over. */
  periodMs: number;
  elapsedMs: number;
  serverCpuMs: number;
  mainCpuMs: number;
  databaseCpuMs: number;
  generatorCpuMs: number;
  otherCpuMs: number;
}

/**
 * One measured period of one scenario on one broker: every client connects (subscribers
 * subscribe), publishers publish for the warm-up then for the measured period, then all
 * disconnect. Subscribers are devices 0.., publishers the devices after them.
 */
async function msgPeriod(broker: RunningBroker, clients: MsgClient[], s: Scenario): Promise<MsgPeriod> {
  // A connection refused on a busy machine (certgate: verifier unavailable) is tried again, twice.
  for (let attempt = 1; ; attempt++) {
    const ready = await Promise.all(
      clients.map((c, i) =>
        c.ask(
          `setup ${broker.port} ${s.topic} ${share(s.subscribers, i)} ${before(s.subscribers, i)}` +
            ` ${share(s.publishers, i)} ${s.subscribers + before(s.publishers, i)} ${MSG_PAYLOAD}`,
        ),
      ),
    );
    const notReady = ready.find((r) => r.split(' ')[1] !== '0');
    if (!notReady) break;
    await Promise.all(clients.map((c) => c.ask('close')));
    if (attempt === 3) throw new Error(`${broker.label} ${s.name}: clients not connected (${notReady})`);
    log(`${broker.label} ${s.name}: clients not connected (${notReady}); again in 1 s`);
    await new Promise((r) => setTimeout(r, 1_000));
  }
  const go = async (ms: number) => {
    const answers = await Promise.all(clients.map((c) => c.ask(`go ${ms} ${MSG_WINDOW}`)));
    const parts = answers.map((a) => a.split(' '));
    const sum = (k: number) => parts.reduce((n, p) => n + Number(p[k]), 0);
    const firstError = parts.map((p) => p.slice(5).join(' ')).find((e) => e !== '-');
    return { published: sum(1), acknowledged: sum(2), received: sum(3), errors: sum(4), ...(firstError ? { firstError } : {}) };
  };
  try {
    if (MSG_WARMUP > 0) await go(MSG_WARMUP * 1000);
    const pids = await broker.pids();
    const genPids = clients.map((c) => c.pid);
    const sample = async () => ({
      main: await cpuOf(pids.server.slice(0, 1)),
      server: await cpuOf(pids.server),
      db: await cpuOf(pids.database),
      gen: await cpuOf(genPids),
      machine: await machineBusyMs(),
    });
    const b = await sample();
    const t0 = performance.now();
    const r = await go(MSG_DURATION * 1000);
    const elapsedMs = performance.now() - t0;
    const a = await sample();
    const server = used(b.server, a.server);
    const db = used(b.db, a.db);
    const generator = used(b.gen, a.gen);
    return {
      ...r,
      periodMs: MSG_DURATION * 1000,
      elapsedMs,
      serverCpuMs: server,
      mainCpuMs: used(b.main, a.main),
      databaseCpuMs: db,
      generatorCpuMs: generator,
      otherCpuMs: Math.max(0, a.machine - b.machine - server - db - generator),
    };
  } finally {
    await Promise.all(clients.map((c) => c.ask('close')));
  }
}

interface MsgSummary {
  received: number;
  perSecond: number;
  perRound: number[];
  publishedPerSecond: number;
  errors: number;
  firstError?: string;
  /** Per message received, µs. */
  serverCpuUs: number;
  generatorCpuUs: number;
  serverCores: number;
  generatorCores: number;
  otherCores: number;
}

function summarizeMsg(periods: MsgPeriod[]): MsgSummary {
  const total = (f: (p: MsgPeriod) => number) => periods.reduce((n, p) => n + f(p), 0);
  const received = total((p) => p.received);
  const seconds = total((p) => p.periodMs) / 1000;
  const ms = total((p) => p.elapsedMs);
  const firstError = periods.find((p) => p.firstError)?.firstError;
  return {
    received,
    perSecond: received / seconds,
    perRound: periods.map((p) => p.received / (p.periodMs / 1000)),
    publishedPerSecond: total((p) => p.published) / seconds,
    errors: total((p) => p.errors),
    ...(firstError ? { firstError } : {}),
    serverCpuUs: (total((p) => p.serverCpuMs) * 1000) / Math.max(1, received),
    generatorCpuUs: (total((p) => p.generatorCpuMs) * 1000) / Math.max(1, received),
    serverCores: total((p) => p.serverCpuMs) / ms,
    generatorCores: total((p) => p.generatorCpuMs) / ms,
    otherCores: total((p) => p.otherCpuMs) / ms,
  };
}

function describeMsg(s: MsgSummary): string {
  return (
    `${s.perSecond.toFixed(0)} msgs/s received (rounds: ${s.perRound.map((r) => r.toFixed(0)).join(', ')})` +
    ` published=${s.publishedPerSecond.toFixed(0)}/s` +
    ` server_cpu=${s.serverCpuUs.toFixed(1)}us/msg (${s.serverCores.toFixed(2)} cores)` +
    ` client_cpu=${s.generatorCpuUs.toFixed(1)}us/msg (${s.generatorCores.toFixed(2)} cores)` +
    ` other_load=${s.otherCores.toFixed(2)} cores` +
    `${s.errors ? ` errors=${s.errors}${s.firstError ? ` (${s.firstError})` : ''}` : ''}`
  );
}

/** Both scenarios on every broker, alternating which broker goes first; the summary lines. */
async function measureMessages(brokers: RunningBroker[], binary: string, listFile: string): Promise<string[]> {
  const clients = Array.from({ length: MSG_PROCESSES }, () => msgClient(binary, listFile));
  const out: string[] = [];
  try {
    for (const s of SCENARIOS) {
      const periods = new Map<RunningBroker, MsgPeriod[]>(brokers.map((b) => [b, []]));
      for (let round = 0; round < MSG_ROUNDS; round++) {
        const order = round % 2 === 0 ? brokers : [...brokers].reverse();
        for (const b of order) {
          const p = await msgPeriod(b, clients, s);
          periods.get(b)!.push(p);
          log(
            `${s.name.padEnd(6)} round ${round + 1} ${b.label.padEnd(9)} ${(p.received / (p.periodMs / 1000)).toFixed(0).padStart(7)} msgs/s` +
              `  published ${(p.published / (p.periodMs / 1000)).toFixed(0)}/s` +
              `  server ${((p.serverCpuMs * 1000) / Math.max(1, p.received)).toFixed(1)} us CPU/msg (${(p.serverCpuMs / p.elapsedMs).toFixed(2)} cores` +
              `${b.label !== 'mosquitto' ? `, main process ${(p.mainCpuMs / p.elapsedMs).toFixed(2)}` : ''})` +
              `  client ${(p.generatorCpuMs / p.elapsedMs).toFixed(2)} cores  other load ${(p.otherCpuMs / p.elapsedMs).toFixed(2)} cores` +
              `${p.errors ? `  ${p.errors} errors (${p.firstError})` : ''}`,
          );
        }
      }
      const summaries = new Map(brokers.map((b) => [b.label, summarizeMsg(periods.get(b)!)]));
      const mosq = summaries.get('mosquitto');
      out.push(`${s.name} mosquitto: ${mosq ? describeMsg(mosq) : 'not run'}`);
      for (const label of certgateLabels(brokers)) {
        const cg = summaries.get(label);
        out.push(`${s.name} ${label}: ${cg ? describeMsg(cg) : 'not run'}`);
        if (mosq && cg) {
          const rounds = cg.perRound.map((c, i) => (c / mosq.perRound[i]!).toFixed(2)).join(', ');
          out.push(`msg_ratio_${s.name}${ratioSuffix(label)}=${(cg.perSecond / mosq.perSecond).toFixed(2)} (goal >= 0.8; rounds: ${rounds})`);
        }
      }
    }
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The brokers

interface Files {
  dir: string;
  deviceCa: string;
  serverCert: string;
  serverKey: string;
}

async function startMosquitto(files: Files): Promise<RunningBroker> {
  const port = await freePort();
  const conf = path.join(files.dir, 'mosquitto.conf');
  await fs.writeFile(
    conf,
    [
      'per_listener_settings false',
      'persistence false',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'connection_messages false',
      `listener ${port} 127.0.0.1`,
      `cafile ${files.deviceCa}`,
      `certfile ${files.serverCert}`,
      `keyfile ${files.serverKey}`,
      'require_certificate true',
      'use_identity_as_username true',
      'set_tcp_nodelay true',
      'allow_anonymous false',
      // As certgate's MQTT_MAX_INFLIGHT and MQTT_MAX_QUEUED (both brokers' defaults: 20, 1000).
      `max_inflight_messages ${MSG_INFLIGHT}`,
      `max_queued_messages ${MSG_QUEUED}`,
      '',
    ].join('\n'),
  );
  const proc = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise<never>((_, reject) => proc.once('exit', (code) => reject(new Error(`mosquitto exited with ${code}`))));
  exited.catch(() => {});
  await Promise.race([waitForPort(port), exited]);
  return { label: 'mosquitto', port, pids: async () => ({ server: [proc.pid!], database: [] }), stop: () => stopProcess(proc) };
}

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

function databaseUrlOf(dataDir: string): Promise<string> {
  if (env.DATABASE_URL) return Promise.resolve(env.DATABASE_URL);
  return fs.readFile(path.join(dataDir, 'embedded-postgres.json'), 'utf8').then((t) => {
    const s = JSON.parse(t) as { port: number; password: string };
    return `postgresql://postgres:${encodeURIComponent(s.password)}@127.0.0.1:${s.port}/certgate`;
  });
}

/** certgate's labels, this build's first (`certgate`), then BENCH_BASELINE's (`baseline`). */
function certgateLabels(brokers: RunningBroker[]): string[] {
  const labels = brokers.map((b) => b.label).filter((l) => l !== 'mosquitto');
  return labels.length ? labels : ['certgate'];
}

const ratioSuffix = (label: string) => (label === 'certgate' ? '' : `_${label}`);

/**
 * certgate from `root`: this checkout, or (BENCH_BASELINE) another build's checkout with its
 * own node_modules, measured in the same run under the label `baseline`.
 */
async function startCertgate(files: Files, deviceCa: Credentials, root = path.dirname(here), label = 'certgate'): Promise<RunningBroker> {
  const port = await freePort();
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-bench-mqtt-'));
  await fs.chmod(dataDir, 0o755);
  const proc = fork(path.join(root, 'bench', 'certgate-server.ts'), [], {
    cwd: root,
    execArgv: ['--import', 'tsx'],
    env: {
      ...env,
      HTTP_HOST: '127.0.0.1',
      HTTP_PORT: '0',
      MQTT_TLS_HOST: '127.0.0.1',
      MQTT_TLS_PORT: String(port),
      MQTT_TLS_CERT: files.serverCert,
      MQTT_TLS_KEY: files.serverKey,
      DATA_DIR: dataDir,
      LOG_LEVEL: env.BENCH_LOG_LEVEL ?? 'warn',
      MANAGEMENT_ADMIN_PASSWORD: ADMIN_PASSWORD,
      VERIFIER_TOKEN,
      MQTT_MAX_INFLIGHT: String(MSG_INFLIGHT),
      MQTT_MAX_QUEUED: String(MSG_QUEUED),
      ...(env.BENCH_PROFILE
        ? { NODE_OPTIONS: `${env.NODE_OPTIONS ?? ''} --cpu-prof --cpu-prof-dir=${path.resolve(env.BENCH_PROFILE)}`.trim() }
        : {}),
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const stop = async () => {
    await stopProcess(proc);
    await fs.rm(dataDir, { recursive: true, force: true }).catch(() => {});
  };
  try {
    const base = await new Promise<string>((resolve, reject) => {
      proc.once('message', (m: { ready?: boolean; address?: string }) => (m.ready ? resolve(m.address!) : reject(new Error('bad message'))));
      proc.once('exit', (code) => reject(new Error(`certgate exited with ${code} before it was ready`)));
    });
    await waitForPort(port);

    // A tenant trusting the device CA, and every bench device registered in it.
    const tenantId = `bench-${Math.random().toString(36).slice(2, 8)}`;
    await api(base, 'POST', '/tenant/tenants', basic('management/admin', ADMIN_PASSWORD), {
      id: tenantId,
      company: `${tenantId} Inc.`,
      domain: `${tenantId}.example.com`,
      adminName: 'admin',
      adminPass: TENANT_PASS,
    });
    await api(base, 'POST', `/tenant/tenants/${tenantId}/trusted-certificates`, basic(`${tenantId}/admin`, TENANT_PASS), {
      name: 'bench device CA',
      status: 'ENABLED',
      autoRegistrationEnabled: false,
      certInPemFormat: deviceCa.certPem,
    });
    // The default profile lets every device publish and subscribe under bench/ (the message runs).
    const profiles = (await api(base, 'GET', `/tenant/tenants/${tenantId}/device-profiles`, basic(`${tenantId}/admin`, TENANT_PASS))) as {
      deviceProfiles: Array<{ id: string; default: boolean; acl: { publish: string[]; subscribe: string[] } }>;
    };
    const profile = profiles.deviceProfiles.find((p) => p.default)!;
    await api(base, 'PUT', `/tenant/tenants/${tenantId}/device-profiles/${profile.id}`, basic(`${tenantId}/admin`, TENANT_PASS), {
      acl: { publish: [...profile.acl.publish, `${MSG_TOPIC_ROOT}/#`], subscribe: [...profile.acl.subscribe, `${MSG_TOPIC_ROOT}/#`] },
    });
    const db = new pg.Client({ connectionString: await databaseUrlOf(dataDir) });
    await db.connect();
    try {
      await db.query(
        `INSERT INTO "Device" (id, "tenantId", name, "deviceProfileId")
         SELECT gen_random_uuid(), $1, 'd' || lpad(i::text, 6, '0'),
                (SELECT id FROM "DeviceProfile" WHERE "tenantId" = $1 AND "isDefault")
           FROM generate_series(0, $2::int - 1) AS i`,
        [tenantId, DEVICES],
      );
      await db.query('SELECT pg_notify($1, $2)', ['certgate_changes', JSON.stringify({ type: 'invalidate', tenantId, what: 'devices' })]);
    } finally {
      await db.end();
    }
    log(`${label}: tenant ${tenantId} trusts the device CA, ${DEVICES} devices registered`);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    label,
    port,
    async pids() {
      const tree = await processTree(proc.pid!);
      // tsx's esbuild helper is not part of the server; PostgreSQL is reported apart.
      return {
        server: tree.filter((p) => p.comm !== 'postgres' && p.comm !== 'esbuild').map((p) => p.pid),
        database: tree.filter((p) => p.comm === 'postgres').map((p) => p.pid),
      };
    },
    stop,
  };
}

// ---------------------------------------------------------------------------------------------

async function machine(): Promise<string> {
  const cpus = os.cpus();
  const mosquitto = await execFileAsync(MOSQUITTO, ['-h']).then(
    (r) => r.stdout,
    (err: { stdout?: string }) => err.stdout ?? '',
  );
  return [
    `date ${new Date().toISOString()}`,
    `node ${process.version}, ${os.platform()} ${os.release()}, ${os.availableParallelism()} CPUs (${cpus[0]?.model ?? 'unknown'})`,
    `${/mosquitto version [^\s]+/.exec(mosquitto)?.[0] ?? 'mosquitto version unknown'}`,
    `${PARALLEL} connections in parallel from ${GENERATORS} generator processes, ${DEVICES} device certificates,` +
      ` ${WARMUP} s warm-up, then ${ROUNDS} rounds of ${DURATION} s per broker, 127.0.0.1;` +
      ` certgate MQTT_WORKERS=${env.MQTT_WORKERS ?? '(default)'}`,
  ].join('\n# ');
}

async function main(): Promise<void> {
  log(await machine());
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-bench-mqtt-pki-'));
  // Started as root, mosquitto drops to its own user, which must still read these files.
  await fs.chmod(dir, 0o755);
  const brokers: RunningBroker[] = [];
  let gen: Generators | undefined;
  try {
    const deviceCa = await createCa({ cn: 'bench MQTT device CA' });
    const serverCa = await createCa({ cn: 'bench MQTT server CA' });
    const server = await createServer({ issuer: serverCa, cn: 'localhost', dns: ['localhost'], ip: ['127.0.0.1'] });
    const files: Files = {
      dir,
      deviceCa: path.join(dir, 'device-ca.crt'),
      serverCert: path.join(dir, 'server.crt'),
      serverKey: path.join(dir, 'server.key'),
    };
    await fs.writeFile(files.deviceCa, deviceCa.certPem);
    await fs.writeFile(files.serverCert, server.certPem);
    await fs.writeFile(files.serverKey, server.keyPem, { mode: 0o644 });
    const devices: LoadDevice[] = [];
    for (let i = 0; i < DEVICES; i++) {
      const d = await createDevice({ issuer: deviceCa, cn: deviceName(i) });
      devices.push({ name: deviceName(i), certPem: d.certPem, keyPem: d.keyPem });
    }
    log(`${DEVICES} device certificates made`);

    if (ONLY !== 'certgate') brokers.push(await startMosquitto(files));
    if (ONLY !== 'mosquitto') brokers.push(await startCertgate(files, deviceCa));
    if (ONLY !== 'mosquitto' && env.BENCH_BASELINE) brokers.push(await startCertgate(files, deviceCa, path.resolve(env.BENCH_BASELINE), 'baseline'));
    const out: string[] = [];
    if (CONNECTS) out.push(...(await measureConnects(brokers, devices, dir, (g) => (gen = g))));
    if (MSG) {
      const binary = await buildC(dir, 'mqtt-msg').catch((err: Error) => {
        log(`bench/mqtt-msg.c not built (${err.message.split('\n')[0]}); messages not measured`);
        return undefined;
      });
      if (binary) {
        log(
          `messages: ${MSG_CLIENTS} publishers to 1 subscriber (fanin), 1 publisher to ${MSG_CLIENTS} subscribers (fanout);` +
            ` QoS 1 both ways, ${MSG_PAYLOAD}-byte payloads, ${MSG_WINDOW} unacknowledged PUBLISH per publisher;` +
            ` bench/mqtt-msg.c x ${MSG_PROCESSES}; ${MSG_WARMUP} s warm-up then ${MSG_DURATION} s measured, ${MSG_ROUNDS} rounds per broker`,
        );
        out.push(...(await measureMessages(brokers, binary, await deviceList(devices, dir))));
      }
    }
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await gen?.stop();
    for (const b of brokers) await b.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** The connection runs: warm-up of each broker, then the rounds; the summary lines. */
async function measureConnects(
  brokers: RunningBroker[],
  devices: LoadDevice[],
  dir: string,
  started: (gen: Generators) => void,
): Promise<string[]> {
  const gen = await startGenerators(devices, dir);
  started(gen);
  log(`load generator: ${gen.kind === 'c' ? 'bench/mqtt-load.c' : 'bench/mqtt-load.ts'} x ${GENERATORS}`);

  for (const b of brokers) {
    if (WARMUP <= 0) break;
    const w = await gen.run(b.port, WARMUP * 1000);
    log(`${b.label}: warm-up ${w.accepted} CONNACKs${w.refused ? `, ${w.refused} refused` : ''}${w.errors ? `, ${w.errors} errors (${w.firstError})` : ''}`);
  }
  const periods = new Map<RunningBroker, Period[]>(brokers.map((b) => [b, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? brokers : [...brokers].reverse();
    for (const b of order) {
      const p = await period(b, gen, DURATION * 1000);
      periods.get(b)!.push(p);
      log(
        `round ${round + 1} ${b.label.padEnd(9)} ${(p.accepted / (p.elapsedMs / 1000)).toFixed(0).padStart(6)} CONNACK/s` +
          `  server ${(p.serverCpuMs / Math.max(1, p.accepted)).toFixed(3)} ms CPU/conn` +
          `${pids(p)}` +
          `  other load ${(p.otherCpuMs / p.elapsedMs).toFixed(2)} cores` +
          `${p.refused ? `  ${p.refused} refused` : ''}${p.errors ? `  ${p.errors} errors (${p.firstError})` : ''}`,
      );
    }
  }

  const summaries = new Map(brokers.map((b) => [b.label, summarize(b.label, periods.get(b)!)]));
  const mosq = summaries.get('mosquitto');
  const out = [`mosquitto: ${mosq ? describe(mosq, false) : 'not run'}`];
  for (const label of certgateLabels(brokers)) {
    const cg = summaries.get(label);
    out.push(`${label}: ${cg ? describe(cg, true) : 'not run'}`);
    if (mosq && cg) {
      const rounds = cg.perRound.map((c, i) => (c / mosq.perRound[i]!).toFixed(2)).join(', ');
      out.push(`connect_ratio${ratioSuffix(label)}=${(cg.connacksPerSecond / mosq.connacksPerSecond).toFixed(2)} (goal >= 1.0; rounds: ${rounds})`);
    }
  }
  return out;
}

await main();
