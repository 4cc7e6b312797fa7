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
