import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { LRUCache } from 'lru-cache';
import { BadRequestError, ForbiddenError, NotFoundError, TooManyRequestsError, UnauthorizedError } from '../errors.js';
import { sha256Hex, verifyPassword } from '../lib/passwords.js';
import type { Db } from '../db/prisma.js';

export const MANAGEMENT_TENANT = 'management';

export const ROLES = [
  'ROLE_TENANT_MANAGEMENT',
  'ROLE_TENANT_ADMIN',
  'ROLE_DEVICE_MANAGER',
  'ROLE_READONLY',
] as const;
export type Role = (typeof ROLES)[number];

export interface Principal {
  tenantId: string;
  userName: string;
  roles: ReadonlySet<Role>;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyInstance {
    authenticate: (req: FastifyRequest) => Promise<void>;
    /** Clears the failed-login count of a login (`tenantId/userName`) from every client: its password changed. */
    forgetLoginFailures: (login: string) => void;
  }
}

/** What a route touches inside a tenant, which decides the role it needs to write. */
export type Area = 'tenant' | 'users' | 'trusted-certificates' | 'devices' | 'auth-events';

const WRITERS: Record<Area, Role[]> = {
  tenant: ['ROLE_TENANT_ADMIN'],
  users: ['ROLE_TENANT_ADMIN'],
  'trusted-certificates': ['ROLE_TENANT_ADMIN'],
  devices: ['ROLE_TENANT_ADMIN', 'ROLE_DEVICE_MANAGER'],
  'auth-events': [],
};

const READERS: Record<Area, Role[]> = {
  tenant: ['ROLE_TENANT_ADMIN', 'ROLE_DEVICE_MANAGER', 'ROLE_READONLY'],
  // Cumulocity lets only administrators see the user list.
  users: ['ROLE_TENANT_ADMIN'],
  'trusted-certificates': ['ROLE_TENANT_ADMIN', 'ROLE_DEVICE_MANAGER', 'ROLE_READONLY'],
  devices: ['ROLE_TENANT_ADMIN', 'ROLE_DEVICE_MANAGER', 'ROLE_READONLY'],
  'auth-events': ['ROLE_TENANT_ADMIN', 'ROLE_DEVICE_MANAGER', 'ROLE_READONLY'],
};

export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new UnauthorizedError();
  return req.principal;
}

/**
 * Tenant-scoped authorization. Another tenant's resources answer 404, the same
 * as absent ones, so existence never leaks; the management tenant may read every tenant.
 */
export function authorizeTenant(req: FastifyRequest, tenantId: string, area: Area, write: boolean): Principal {
  const p = principalOf(req);
  const management = isManagement(req);
  if (p.tenantId !== tenantId) {
    if (!management) throw new NotFoundError(`Tenant ${tenantId} not found`, 'tenant/NotFound');
    if (write) throw new ForbiddenError('The management tenant may read, not change, other tenants');
    return p;
  }
  if (management) return p;
  const allowed = write ? WRITERS[area] : READERS[area];
  if (!allowed.some((r) => p.roles.has(r))) {
    throw new ForbiddenError(
      write ? `Your roles do not allow changing ${area}` : `Your roles do not allow reading ${area}`,
    );
  }
  return p;
}

export function isManagement(req: FastifyRequest): boolean {
  const p = principalOf(req);
  return p.tenantId === MANAGEMENT_TENANT && p.roles.has('ROLE_TENANT_MANAGEMENT');
}

export function requireManagement(req: FastifyRequest): Principal {
  const p = principalOf(req);
  if (!isManagement(req)) {
    throw new ForbiddenError('ROLE_TENANT_MANAGEMENT of the management tenant is required');
  }
  return p;
}

export interface AuthOptions {
  db: Pick<Db, 'user'>;
  failuresBeforeLockout: number;
  lockoutSeconds?: number;
}

/**
 * HTTP Basic with Cumulocity's `<tenantId>/<userName>` login. Successful checks are remembered
 * for a minute by a hash of (stored hash, password), so the deliberately slow scrypt runs once
 * per client rather than once per request; a password change changes the stored hash and so
 * misses the cache.
 */
export const authPlugin = fp(async function auth(app: FastifyInstance, opts: AuthOptions) {
  const verified = new LRUCache<string, true>({ max: 10_000, ttl: 60_000 });
  const failures = new LRUCache<string, { count: number; until: number }>({ max: 10_000 });
  const lockoutMs = (opts.lockoutSeconds ?? 300) * 1000;

  app.decorateRequest('principal', undefined);
  app.decorate('forgetLoginFailures', (login: string) => {
    const suffix = `|${login}`;
    for (const key of [...failures.keys()]) if (key.endsWith(suffix)) failures.delete(key);
  });
  app.decorate('authenticate', async (req: FastifyRequest) => {
    const header = req.headers.authorization;
    if (!header?.startsWith('Basic ')) throw new UnauthorizedError('Basic authentication is required');
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    // No login or password holds U+0000, and PostgreSQL text cannot: refused before any lookup.
    if (decoded.includes('\u0000')) {
      throw new BadRequestError('The Basic credentials contain U+0000 (NUL), which no login or password holds', 'request/InvalidCharacter');
    }
    const colon = decoded.indexOf(':');
    const login = colon < 0 ? '' : decoded.slice(0, colon);
    const password = colon < 0 ? '' : decoded.slice(colon + 1);
    const slash = login.indexOf('/');
    if (slash <= 0 || slash === login.length - 1 || login.length > 200 || password.length > 1024) {
      throw new UnauthorizedError('Login must be <tenantId>/<userName>');
    }
    const tenantId = login.slice(0, slash);
    const userName = login.slice(slash + 1);

    const throttleKey = `${req.ip}|${login}`;
    const now = Date.now();
    const f = failures.get(throttleKey);
    if (f && f.count >= opts.failuresBeforeLockout && f.until > now) {
      throw new TooManyRequestsError('Too many failed logins; try again later', Math.ceil((f.until - now) / 1000));
    }

    const user = await opts.db.user.findUnique({
      where: { tenantId_userName: { tenantId, userName } },
      select: { passwordHash: true, roles: true, tenant: { select: { status: true } } },
    });
    // Hash even for unknown users so timing does not reveal which logins exist.
    const stored = user?.passwordHash ?? DUMMY_HASH;
    const cacheKey = sha256Hex(`${stored}\0${password}`);
    const ok = verified.has(cacheKey) || (await verifyPassword(password, stored));
    if (!user || !ok) {
      const prev = f && f.until > now ? f.count : 0;
      failures.set(throttleKey, { count: prev + 1, until: now + lockoutMs });
      throw new UnauthorizedError('Invalid credentials');
    }
    failures.delete(throttleKey);
    verified.set(cacheKey, true);
    if (user.tenant.status === 'SUSPENDED' && tenantId !== MANAGEMENT_TENANT) {
      throw new UnauthorizedError('The tenant is suspended', 'security/TenantSuspended');
    }
    req.principal = { tenantId, userName, roles: new Set(user.roles.filter(isRole)) };
  });
});

function isRole(r: string): r is Role {
  return (ROLES as readonly string[]).includes(r);
}

// A valid scrypt hash of a random secret: verifying against it costs what a real check costs.
const DUMMY_HASH =
  'scrypt$32768$8$1$8xR4s1O3nD71sGkt16a56w==$kjv6XSbukLdzxyhpfnwocXlkFY8JUgp1qBDixzKwuyA=';
