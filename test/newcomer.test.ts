/**
 * A newcomer's first minutes: `npm start` on a clone with no `.data` and no DATABASE_URL starts
 * an embedded PostgreSQL, applies migrations and is ready within 60 s; the generated management
 * password is printed once and works; a restart keeps it and prints nothing; SIGTERM stops
 * everything, the embedded PostgreSQL included. A bad environment stops the start at once with
 * a list of what is wrong.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const TSX = path.join(REPO, 'node_modules', 'tsx', 'dist', 'cli.mjs');
const READY_WITHIN_MS = 60_000;

/** The promise's value, or 'timeout' after `ms`; the timer never outlives the race. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** The environment of a fresh shell: nothing of certgate's configuration or the test database. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(DATABASE_URL|TEST_DATABASE_URL|MANAGEMENT_ADMIN_PASSWORD|VERIFIER_TOKEN|VERIFIER_URL|MQTT_TLS_.*|HTTP_.*|DATA_DIR|NODE_TEST_CONTEXT)$/.test(k)) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

interface Started {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `npm start` is `node --import tsx src/server.ts` in the repository. */
function start(t: TestContext, env: NodeJS.ProcessEnv): Started {
  const child = spawn(process.execPath, [TSX, 'src/server.ts'], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await within(exited, 15_000);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function waitReady(base: string, s: Started): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < READY_WITHIN_MS) {
    if (s.child.exitCode !== null) assert.fail(`certgate exited with ${s.child.exitCode}:\n${s.stderr()}\n${s.stdout().slice(-2000)}`);
    try {
      const res = await fetch(`${base}/ready`, { signal: AbortSignal.timeout(2_000) });
      if (res.status === 200) return Date.now() - t0;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`/ready did not answer 200 within ${READY_WITHIN_MS / 1000} s:\n${s.stderr()}\n${s.stdout().slice(-2000)}`);
}

/** PIDs of processes whose command line mentions `dir`. */
async function processesUsing(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').some((arg) => arg.includes(dir))) pids.push(Number(entry));
  }
  return pids;
}

/** The embedded cluster's directory: `<dataDir>/pg`, or where the settings file says it had to go. */
async function clusterDir(dataDir: string): Promise<string> {
  const settings = JSON.parse(await fs.readFile(path.join(dataDir, 'embedded-postgres.json'), 'utf8').catch(() => '{}')) as { clusterDir?: string };
  return settings.clusterDir ?? path.join(dataDir, 'pg');
}

async function stopAndCheck(s: Started, dataDir: string): Promise<void> {
  const cluster = await clusterDir(dataDir);
  s.child.kill('SIGTERM');
  const result = await within(s.exited, 30_000);
  assert.notEqual(result, 'timeout', 'certgate stops within 30 s of SIGTERM');
  assert.equal((result as { code: number | null }).code, 0, `clean exit on SIGTERM:\n${s.stderr()}`);
  let left: number[] = [];
  for (let i = 0; i < 40; i++) {
    left = await processesUsing(cluster);
    if (left.length === 0) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.deepEqual(left, [], 'no PostgreSQL process of this data directory is left');
  await assert.rejects(fs.access(path.join(cluster, 'postmaster.pid')), 'PostgreSQL shut down cleanly (no postmaster.pid)');
}

/** Stops an embedded PostgreSQL a failed test left behind (it belongs to the certgate this test started). */
async function stopLeftoverPostgres(cluster: string): Promise<void> {
  const pidFile = await fs.readFile(path.join(cluster, 'postmaster.pid'), 'utf8').catch(() => '');
  const pid = Number(pidFile.split('\n')[0]);
  if (pid > 0) {
    try {
      process.kill(pid, 'SIGINT');
    } catch {
      // already gone
    }
  }
}

test('npm start on a fresh clone: ready within 60 s, the admin password printed once, a clean stop, a quiet restart', { timeout: 300_000 }, async (t) => {
  // A fresh private directory (mkdtemp makes it 0700): run as root, the embedded PostgreSQL's
  // own user cannot enter it, which certgate must handle too.
  const dataDir = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-newcomer-')), '.data');
  t.after(async () => {
    const cluster = await clusterDir(dataDir);
    await stopLeftoverPostgres(cluster);
    if (!cluster.startsWith(dataDir)) {
      await fs.rm(path.dirname(cluster), { recursive: true, force: true });
      await fs.rmdir(path.dirname(path.dirname(cluster))).catch(() => {});
    }
    await fs.rm(path.dirname(dataDir), { recursive: true, force: true });
  });
  await assert.rejects(fs.access(dataDir), 'no .data yet');

  const httpPort = await freePort();
  const env = cleanEnv({
    DATA_DIR: dataDir,
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: String(httpPort),
    MQTT_TLS_HOST: '127.0.0.1',
    MQTT_TLS_PORT: String(await freePort()),
    LOG_LEVEL: 'info',
  });
  const base = `http://127.0.0.1:${httpPort}`;

  const first = start(t, env);
  const took = await waitReady(base, first);
  t.diagnostic(`first start ready after ${took} ms`);

  const out = first.stdout();
  const printed = [...out.matchAll(/management\/admin\s+password: (\S+)/g)].map((m) => m[1]!);
  assert.equal(printed.length, 1, `the generated password is printed once:\n${out.slice(0, 3000)}`);
  const password = printed[0]!;
  assert.ok(password.length >= 16, 'a strong generated password');
  assert.equal(out.split(password).length - 1, 1, 'and appears nowhere else, logs included');
  assert.ok(!first.stderr().includes(password));

  const login = `Basic ${Buffer.from(`management/admin:${password}`).toString('base64')}`;
  const tenants = await fetch(`${base}/tenant/tenants`, { headers: { authorization: login } });
  assert.equal(tenants.status, 200, 'the printed password logs in');
  const wrong = await fetch(`${base}/tenant/tenants`, { headers: { authorization: `Basic ${Buffer.from('management/admin:wrong').toString('base64')}` } });
  assert.equal(wrong.status, 401);
  const created = await fetch(`${base}/tenant/tenants`, {
    method: 'POST',
    headers: { authorization: login, 'content-type': 'application/json' },
    body: JSON.stringify({ id: 'newcomer', company: 'Newcomer', domain: 'newcomer.example.com', adminName: 'admin', adminPass: 'newcomer-pass' }),
  });
  assert.equal(created.status, 201);

  await stopAndCheck(first, dataDir);

  // Second start on the same data: no new password, the old one and the data still there.
  const port2 = await freePort();
  const second = start(t, { ...env, HTTP_PORT: String(port2), MQTT_TLS_PORT: String(await freePort()) });
  const base2 = `http://127.0.0.1:${port2}`;
  await waitReady(base2, second);
  assert.doesNotMatch(second.stdout(), /password/i, 'no password is printed on a later start');
  assert.ok(!second.stdout().includes(password));
  const again = await fetch(`${base2}/tenant/tenants/newcomer`, { headers: { authorization: login } });
  assert.equal(again.status, 200, 'the first password still works and the data survived');
  await stopAndCheck(second, dataDir);
});

test('a bad environment stops the start with exit code 2 and a list of everything wrong', { timeout: 60_000 }, async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-badenv-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  const dataDir = path.join(dir, '.data');
  const s = start(t, cleanEnv({ DATA_DIR: dataDir, HTTP_PORT: 'abc', DATABASE_URL: 'mysql://x' }));
  const result = await within(s.exited, 45_000);
  assert.notEqual(result, 'timeout', 'the start stops at once');
  assert.equal((result as { code: number | null }).code, 2, `exit code 2:\n${s.stderr()}`);
  const err = s.stderr();
  assert.match(err, /invalid environment/);
  assert.match(err, /^\s+- HTTP_PORT: /m, 'HTTP_PORT is listed');
  assert.match(err, /^\s+- DATABASE_URL: .*postgres/m, 'DATABASE_URL is listed, saying what it must be');
  assert.doesNotMatch(err, /\n\s+at .+:\d+:\d+/, 'a list, not a stack trace');
  await assert.rejects(fs.access(dataDir), 'nothing was started or created');
});
