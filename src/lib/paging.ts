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

/**
 * The base of the links the API returns (`self`, `next`, `prev`): PUBLIC_URL when configured;
 * otherwise the Host the client sent when it is a valid host[:port], else the address the
 * request arrived on. The Host header is the client's to choose, so it is never echoed unchecked.
 */
export function baseUrl(req: FastifyRequest): string {
  const configured = req.server.publicUrl;
  if (configured) return configured;
  const host = req.host;
  if (isValidHost(host)) return `${req.protocol}://${host}`;
  return `${req.protocol}://${listeningAddress(req)}`;
}

const HOST_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const IPV6_LITERAL = /^\[[0-9A-Fa-f:.]{2,45}\]$/;

/** A DNS name, IPv4 address or bracketed IPv6 address, with an optional port 1-65535. */
export function isValidHost(host: string | undefined): host is string {
  if (!host || host.length > 260) return false;
  const m = /^(.*?)(?::(\d{1,5}))?$/.exec(host);
  if (!m) return false;
  const [, name, port] = m;
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return false;
  if (!(name!.length <= 253 && HOST_NAME.test(name!)) && !IPV6_LITERAL.test(name!)) return false;
  try {
    return new URL(`http://${host}`).host !== '';
  } catch {
    return false;
  }
}

function listeningAddress(req: FastifyRequest): string {
  const address = req.socket?.localAddress;
  const port = req.socket?.localPort;
  if (!address) return 'localhost';
  const name = address.includes(':') ? `[${address.replace(/^::ffff:(?=\d+\.)/, '')}]` : address;
  const host = name.startsWith('[') && /^\[\d+\.\d+\.\d+\.\d+\]$/.test(name) ? name.slice(1, -1) : name;
  return port ? `${host}:${port}` : host;
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
  // Appended, not resolved: PUBLIC_URL may carry a path prefix (a reverse proxy's). A request
  // target in absolute form (`GET http://host/path`) contributes its path and query only.
  const target = req.url.startsWith('/') ? req.url : (URL.parse(req.url) ?? URL.parse(req.url, 'http://x'))?.href.replace(/^[a-z]+:\/\/[^/]*/i, '') || '/';
  const url = URL.parse(`${baseUrl(req)}${target}`) ?? new URL(baseUrl(req));
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
