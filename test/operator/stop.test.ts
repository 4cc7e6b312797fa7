/**
 * Stopping certgate the way an operator does: SIGTERM (kill) or SIGINT to the process they
 * started, `npm start` or a launcher such as npx that ends without passing the signal on. Once
 * that process is gone, certgate is gone too: its HTTP and MQTT ports are free, its embedded
 * PostgreSQL has stopped, and the log says "shutting down".
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { freePort, REPO, until } from '../helpers/service.js';
import { cleanEnv } from './run.js';

interface Started {
  launcher: ChildProcess;
  dataDir: string;
  httpPort: number;
  mqttPort: number;
  output(): string;
}

/** Runs `command` (through sh, as npm and npx do) in its own process group, until certgate listens on both ports. */
async function launch(t: TestContext, command: string, env: Record<string, string> = {}): Promise<Started> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-stop-'));
  await fs.chmod(dataDir, 0o755);
  const httpPort = await freePort();
  const mqttPort = await freePort();
  const launcher = spawn('sh', ['-c', command], {
    cwd: REPO,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cleanEnv({ DATA_DIR: dataDir, HTTP_PORT: String(httpPort), MQTT_TLS_PORT: String(mqttPort), MQTT_WORKERS: '2', ...env }),
  });
  let out = '';
  launcher.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  launcher.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  t.after(async () => {
    try {
      process.kill(-launcher.pid!, 'SIGKILL');
    } catch {
      // the group is gone, as it should be
    }
    await fs.rm(dataDir, { recursive: true, force: true });
  });
  await until(() => /REST API listening/.test(out) || launcher.exitCode !== null, 90_000, 'certgate to start');
  assert.match(out, /REST API listening/, `certgate started:\n${out}`);
  return { launcher, dataDir, httpPort, mqttPort, output: () => out };
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** The embedded PostgreSQL's pid, from its lock file in the cluster directory. */
async function postmasterPid(dataDir: string): Promise<number> {
  const settings = JSON.parse(await fs.readFile(path.join(dataDir, 'embedded-postgres.json'), 'utf8')) as { clusterDir?: string };
  const lock = await fs.readFile(path.join(settings.clusterDir ?? path.join(dataDir, 'pg'), 'postmaster.pid'), 'utf8');
  return Number(lock.split('\n')[0]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Within a few seconds of the signal: both ports free, PostgreSQL stopped, "shutting down" logged. */
async function assertStopped(started: Started, postgres: number): Promise<void> {
  const deadline = 15_000;
  await until(async () => !(await listening(started.httpPort)) && !(await listening(started.mqttPort)), deadline, 'free ports');
  await until(() => !alive(postgres), deadline, `embedded PostgreSQL (pid ${postgres}) to stop`);
  await until(() => /"msg":"shutting down"/.test(started.output()), deadline, '"shutting down" logged');
  // Nothing of it is left: no MQTT worker, no PostgreSQL process, no helper.
  await until(() => !alive(-started.launcher.pid!), deadline, 'every process it started to end');
}

describe('stopping certgate', () => {
  test('SIGTERM to npm start stops certgate, its MQTT workers and its embedded PostgreSQL', { timeout: 120_000 }, async (t) => {
    const started = await launch(t, 'exec npm start');
    const postgres = await postmasterPid(started.dataDir);
    assert.ok(alive(postgres));
    const exited = new Promise<number | null>((resolve) => started.launcher.once('exit', (code) => resolve(code)));
    process.kill(started.launcher.pid!, 'SIGTERM');
    await assertStopped(started, postgres);
    assert.equal(await exited, 0, `npm start ends with certgate's status:\n${started.output()}`);
  });

  test('a launcher that ends on SIGTERM without passing it on (as npx does) does not leave certgate running', { timeout: 120_000 }, async (t) => {
    // sh waits for certgate and dies of the signal itself: certgate is left without its parent.
    const started = await launch(t, 'node bin/certgate.js api; true', { MQTT_WORKERS: '1', DOCS_ENABLED: 'false' });
    // With DOCS_ENABLED=false the start names no /docs.
    const line = JSON.parse(started.output().split('\n').find((l) => l.includes('"msg":"REST API listening"'))!) as Record<string, unknown>;
    assert.equal(line.docs, undefined);
    assert.doesNotMatch(started.output(), /\/docs/);
    const postgres = await postmasterPid(started.dataDir);
    process.kill(started.launcher.pid!, 'SIGTERM');
    await assertStopped(started, postgres);
    assert.match(started.output(), /"signal":"parent process exited"/);
  });
});
