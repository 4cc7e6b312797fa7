import { z } from 'zod';

/** Cumulocity's error shape, used by every 4xx/5xx response. */
export const errorSchema = z
  .object({
    error: z.string().describe('`<area>/<Reason>`'),
    message: z.string(),
    info: z.string().describe('Where to read more'),
    details: z.unknown().optional(),
  })
  .meta({ id: 'Error' });

export const statisticsSchema = z.object({
  currentPage: z.number().int(),
  pageSize: z.number().int(),
  totalPages: z.number().int().optional(),
});

/** Cumulocity paging: `?pageSize` (default 5, max 2000), `?currentPage`, `?withTotalPages`. */
export const pagingQuery = z.object({
  pageSize: z.coerce.number().int().min(1).max(2000).default(5),
  currentPage: z.coerce.number().int().min(1).max(1_000_000).default(1),
  withTotalPages: z
    .enum(['true', 'false'])
    .optional()
    .transform((v) => v === 'true'),
});

export type PagingQuery = z.output<typeof pagingQuery>;

/** Error responses a route may give, keyed by status, for its `response` schema. */
export function errorResponses(...codes: number[]): Record<number, typeof errorSchema> {
  const all = [400, 401, 403, 404, 409, 413, 422, 429, 503];
  const out: Record<number, typeof errorSchema> = {};
  for (const c of codes.length ? codes : all) out[c] = errorSchema;
  return out;
}

export const tenantIdParam = z.string().min(1).max(64);

/**
 * Times are ISO 8601 with years 0001 to 9999 once in UTC: what PostgreSQL's timestamp and every
 * ISO 8601 reader take. Year 0000 or an expanded year (`+275760-09-13`) is a 400, not a failed write.
 */
function storableYear(v: string): boolean {
  const year = new Date(v).getUTCFullYear();
  return year >= 1 && year <= 9999;
}
const YEAR_RANGE = 'must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z';

/** An ISO 8601 date-time with `Z` or an offset. */
export const isoDateTime = z.iso.datetime({ offset: true }).refine(storableYear, YEAR_RANGE);

/** An ISO 8601 date-time, or a date (midnight UTC). */
export const isoDateTimeOrDate = z.iso.datetime({ offset: true }).or(z.iso.date()).refine(storableYear, YEAR_RANGE);

/** The schema of a Cumulocity collection response holding `key: item[]`. */
export function collectionSchema<K extends string, T extends z.ZodType>(key: K, item: T) {
  return z.object({
    [key]: z.array(item),
    statistics: statisticsSchema,
    self: z.string(),
    next: z.string().optional(),
    prev: z.string().optional(),
  } as { [P in K]: z.ZodArray<T> } & {
    statistics: typeof statisticsSchema;
    self: z.ZodString;
    next: z.ZodOptional<z.ZodString>;
    prev: z.ZodOptional<z.ZodString>;
  });
}
