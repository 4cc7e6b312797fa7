import type { FastifyRequest } from 'fastify';
import type { PagingQuery } from './http-schemas.js';

export interface Page<T> {
  items: T[];
  /** Set when the caller asked for `withTotalPages=true`. */
  total?: number;
}

export function pageWindow(q: PagingQuery): { skip: number; take: number } {
  return { skip: (q.currentPage - 1) * q.pageSize, take: q.pageSize };
}

export function baseUrl(req: FastifyRequest): string {
  return `${req.protocol}://${req.host}`;
}

/**
 * A Cumulocity collection: `{<key>: [...], statistics, self, next?, prev?}`. `next` is given when
 * the page is full (Cumulocity's behaviour: the client learns the end from an empty page) or,
 * when totals are known, while pages remain.
 */
export function collection<K extends string, T>(
  req: FastifyRequest,
  key: K,
  page: Page<T>,
  q: PagingQuery,
): { [P in K]: T[] } & {
  statistics: { currentPage: number; pageSize: number; totalPages?: number };
  self: string;
  next?: string;
  prev?: string;
} {
  const url = new URL(req.url, baseUrl(req));
  const link = (p: number): string => {
    const u = new URL(url);
    u.searchParams.set('pageSize', String(q.pageSize));
    u.searchParams.set('currentPage', String(p));
    return u.toString();
  };
  const totalPages = page.total === undefined ? undefined : Math.ceil(page.total / q.pageSize);
  const hasNext = totalPages === undefined ? page.items.length === q.pageSize : q.currentPage < totalPages;
  return {
    [key]: page.items,
    statistics: {
      currentPage: q.currentPage,
      pageSize: q.pageSize,
      ...(totalPages === undefined ? {} : { totalPages }),
    },
    self: link(q.currentPage),
    ...(hasNext ? { next: link(q.currentPage + 1) } : {}),
    ...(q.currentPage > 1 ? { prev: link(q.currentPage - 1) } : {}),
  } as never;
}
