/**
 * Why a start cannot go on, in one line that names the setting to change. `main` prints the
 * message alone (no stack) and exits non-zero; anything else that stops a start is unexpected and
 * logged with its stack.
 */
import net from 'node:net';
import pg from 'pg';

export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

/** Where a server listens and which settings choose it. */
export interface ListenSetting {
  host: string;
  port: number;
  hostSetting: string;
  portSetting: string;
}

/** The one-line reason a listen on `where` failed, or undefined for an error that is no listen failure. */
export function listenFailure(err: unknown, where: ListenSetting): StartupError | undefined {
  const e = err as { code?: string; message?: string } | undefined;
  const text = `${e?.code ?? ''} ${e?.message ?? ''}`;
  const { host, port, hostSetting, portSetting } = where;
  if (/EADDRINUSE/.test(text)) return new StartupError(`port ${port} is in use: set ${portSetting} to a free port`);
  if (/EACCES/.test(text)) {
    return new StartupError(`port ${port} needs privileges this process does not have: set ${portSetting} to 1024 or above`);
  }
  if (/EADDRNOTAVAIL|ENOTFOUND|EAI_AGAIN/.test(text)) {
    return new StartupError(`${host} is not an address of this host: set ${hostSetting} to one of its addresses (0.0.0.0 for all)`);
  }
  return undefined;
}

/** Binds and releases `where` at once, so a busy port stops the start before anything else begins. */
export async function checkPortFree(where: ListenSetting): Promise<void> {
  if (where.port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const server = net.createServer();
    server.once('error', (err) => reject(listenFailure(err, where) ?? err));
    server.listen({ host: where.host, port: where.port, exclusive: true }, () => server.close(() => resolve()));
  });
}

/** `host:port/database` of a PostgreSQL URL, without the credentials. */
export function describeDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return 'the configured database';
  }
}

/**
 * Connects once to DATABASE_URL (within 10 s) and turns the usual failures into one line: nothing
 * listening, an unknown host, wrong credentials, a database that does not exist.
 */
export async function checkDatabase(url: string, setting = 'DATABASE_URL'): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    throw databaseFailure(err, url, setting);
  } finally {
    await client.end().catch(() => {});
  }
}

export function databaseFailure(err: unknown, url: string, setting = 'DATABASE_URL'): StartupError {
  const e = err as { code?: string; message?: string };
  const where = describeDatabaseUrl(url);
  const why = (() => {
    switch (e.code) {
      case 'ECONNREFUSED':
        return 'nothing accepts connections there';
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return 'the host name is unknown';
      case 'ETIMEDOUT':
        return 'no answer';
      case '28P01':
      case '28000':
        return 'the user name or password is wrong';
      case '3D000':
        return 'the database does not exist';
      default:
        if (/timeout/i.test(e.message ?? '')) return 'no answer within 10 s';
        return (e.message ?? String(err)).split('\n')[0];
    }
  })();
  return new StartupError(`cannot use the database at ${where} (${why}): set ${setting} to a PostgreSQL certgate can reach and log in to`);
}
