/**
 * certgate as users run it: a separate process (`npm start`'s `tsx src/server.ts`, or
 * `certgate api` / `certgate mqtt`), on free ports, found by reading its JSON log lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export type ServiceMode = 'all' | 'api' | 'mqtt';

export interface ServiceOptions {
  /**
   * `all`: `node_modules/.bin/tsx src/server.ts` (what `npm start` runs); `api` and `mqtt`:
   * `bin/certgate.js api|mqtt`.
   */
  mode?: ServiceMode;
  /** Added to the environment; HTTP and MQTT ports default to free ports. */
  env?: Record<string, string>;
  /** DATA_DIR; a fresh temporary directory when not given (removed by `stop`). */
  dataDir?: string;
  startTimeoutMs?: number;
}

export interface Service {
  mode: ServiceMode;
  dataDir: string;
  /** `http://127.0.0.1:<port>` (modes `all` and `api`). */
  httpUrl: string;
  /** The mTLS MQTT port (modes `all` and `mqtt`). */
  mqttPort: number;
  /** The CA of the listener's generated server certificate (modes `all` and `mqtt`). */
  serverCaPath: string;
  pid: number;
  /** Everything the process wrote on stdout and stderr so far. */
  output(): string;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
// A test process that dies must not leave servers (and their PostgreSQL) behind.
process.once('exit', () => {
  for (const child of running) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

export async function startService(opts: ServiceOptions = {}): Promise<Service> {
  const mode = opts.mode ?? 'all';
  const ownDataDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-service-')));
  // PostgreSQL runs as another user when the tests run as root: it must reach its directory.
  if (ownDataDir) await fs.chmod(dataDir, 0o755);
  const [cmd, args] =
    mode === 'all'
      ? [path.join(REPO, 'node_modules/.bin/tsx'), ['src/server.ts']]
      : [process.execPath, ['bin/certgate.js', mode]];
  const ports = { HTTP_PORT: String(await freePort()), MQTT_TLS_PORT: String(await freePort()) };
  const child = spawn(cmd, args, {
    cwd: REPO,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      HTTP_HOST: '127.0.0.1',
      MQTT_TLS_HOST: '127.0.0.1',
      ...ports,
      LOG_LEVEL: 'info',
      DATA_DIR: dataDir,
      ...opts.env,
    },
  });
  running.add(child);
  let out = '';
  let httpUrl = '';
  let mqttPort = 0;
  let caPath = '';
  let buffered = '';
  const onLine = (line: string) => {
    if (!line.startsWith('{')) return;
    try {
      const entry = JSON.parse(line) as { msg?: string; url?: string; port?: number; ca?: string };
      if (entry.msg === 'REST API listening' && entry.url) httpUrl = entry.url;
      if (entry.msg === 'mTLS MQTT listener ready' && entry.port) mqttPort = entry.port;
      if (entry.ca) caPath = entry.ca;
    } catch {
      // not a log line
    }
  };
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    buffered += d.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const l of lines) onLine(l);
  });
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  void exited.then(() => running.delete(child));

  const ready = () => (mode === 'mqtt' || httpUrl !== '') && (mode === 'api' || mqttPort !== 0);
  const deadline = Date.now() + (opts.startTimeoutMs ?? 90_000);
  let exitCode: number | null | undefined;
  void exited.then((c) => (exitCode = c));
  while (!ready()) {
    const failure =
      exitCode !== undefined
        ? `certgate ${mode} exited with ${exitCode} before it was ready`
        : Date.now() > deadline
          ? `certgate ${mode} not ready in time`
          : undefined;
    if (failure) {
      killGroup(child, 'SIGKILL');
      await exited;
      if (ownDataDir) await fs.rm(dataDir, { recursive: true, force: true });
      throw new Error(`${failure}:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }

  let stopping: Promise<void> | undefined;
  return {
    mode,
    dataDir,
    httpUrl,
    mqttPort,
    serverCaPath: caPath,
    pid: child.pid!,
    output: () => out,
    stop() {
      stopping ??= (async () => {
        if (exitCode === undefined) {
          // A graceful stop closes the listener and stops the embedded PostgreSQL.
          child.kill('SIGTERM');
          const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 20_000);
          await exited;
          clearTimeout(timer);
        }
        // Anything the process left in its group (it should be nothing).
        killGroup(child, 'SIGKILL');
        if (ownDataDir) await fs.rm(dataDir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

/** A port nothing listens on right now (the kernel's pick for port 0, released at once). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // the group is gone
  }
}

/** Polls `cond` every 25 ms until it holds; throws after `timeoutMs`. Returns the time it took. */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 5_000, what = 'condition'): Promise<number> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return Date.now() - start;
}

export interface ApiReply {
  status: number;
  body: any;
}

/** One REST call with HTTP Basic `tenant/user:password`, the body sent and answered as JSON. */
export async function api(baseUrl: string, method: string, urlPath: string, login?: string, body?: unknown): Promise<ApiReply> {
  const headers: Record<string, string> = {};
  if (login) headers.authorization = `Basic ${Buffer.from(login).toString('base64')}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${baseUrl}${urlPath}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('json') && text !== '') parsed = JSON.parse(text);
  return { status: res.status, body: parsed };
}

/** Like `api`, but the status must be the expected one; returns the body. */
export async function apiOk(baseUrl: string, method: string, urlPath: string, login: string, body?: unknown, status?: number): Promise<any> {
  const r = await api(baseUrl, method, urlPath, login, body);
  const want = status ?? (method === 'POST' ? 201 : method === 'DELETE' ? 204 : 200);
  if (r.status !== want) throw new Error(`${method} ${urlPath}: ${r.status} (wanted ${want}) ${JSON.stringify(r.body)}`);
  return r.body;
}
