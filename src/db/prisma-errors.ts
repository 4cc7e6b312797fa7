/** Prisma error codes, read the same way whether or not a driver adapter wrapped them. */
export function prismaCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/** A unique constraint was violated (P2002). */
export function isUniqueViolation(err: unknown): boolean {
  return prismaCode(err) === 'P2002';
}

/** The record to update or delete does not exist (P2025). */
export function isRecordMissing(err: unknown): boolean {
  return prismaCode(err) === 'P2025';
}

/** A foreign key points nowhere (P2003). */
export function isForeignKeyViolation(err: unknown): boolean {
  return prismaCode(err) === 'P2003';
}

/**
 * What the database's being away or too slow looks like, however it surfaced: a refused or lost
 * connection, no connection within the acquire timeout (`pg`: "timeout exceeded when trying to
 * connect", "Connection terminated due to connection timeout"; Prisma: P2028 for a transaction),
 * a statement past its timeout (PostgreSQL's 57014; `pg`'s own "Query read timeout" when the
 * server does not even answer), a server starting or stopping.
 */
const UNAVAILABLE =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|Connection terminated|too many clients|the database system is (starting|shutting) up|DatabaseNotReachable|timeout exceeded when trying to connect|Query read timeout|statement timeout/i;
const UNAVAILABLE_CODES = new Set(['P1001', 'P1002', 'P1008', 'P1017', 'P2024', 'P2028', 'ECONNREFUSED', '57014', '57P01', '57P03', '08006', '08001']);

/** The database cannot be reached, or did not answer in time: a 503, never a 500. */
export function isDatabaseUnavailable(err: unknown): boolean {
  const seen = new Set<unknown>();
  let e: unknown = err;
  while (e && typeof e === 'object' && !seen.has(e)) {
    seen.add(e);
    const o = e as { name?: string; message?: string; code?: string; kind?: string; originalCode?: string; cause?: unknown };
    if (o.name === 'PrismaClientInitializationError') return true;
    if ((o.code && UNAVAILABLE_CODES.has(o.code)) || (o.originalCode && UNAVAILABLE_CODES.has(o.originalCode))) return true;
    if (o.kind === 'DatabaseNotReachable' || o.kind === 'ConnectionClosed' || o.kind === 'SocketTimeout') return true;
    if (o.message && UNAVAILABLE.test(o.message)) return true;
    e = o.cause;
  }
  return false;
}
