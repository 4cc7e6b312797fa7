/**
 * certgate's server started in the test process (`startServer`) on a test database, with the
 * mTLS listener's certificate in a temporary data directory, and tenants set up through its REST
 * API (calls made with `apiOk`).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import type { Logger } from 'pino';
import type { Credentials } from '../../src/certs/certs-service.js';
import { loadConfig } from '../../src/config.js';
import { startServer, type RunningServer, type ServeMode } from '../../src/server.js';
import { MANAGEMENT_PASSWORD, VERIFIER_TOKEN } from './app.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { apiOk } from './service.js';

/** The management admin's login, `tenant/user:password` as `apiOk` takes it. */
export const MANAGEMENT_LOGIN = `management/admin:${MANAGEMENT_PASSWORD}`;
export const TENANT_PASSWORD = 'tenant-secret-1';

/** The login of the admin of a tenant made by `createTrustingTenant`. */
export const tenantLogin = (tenantId: string): string => `${tenantId}/admin:${TENANT_PASSWORD}`;

/** A fresh data directory (readable by other users) holding the listener's `server.crt` and `server.key`. */
export async function serverDir(prefix: string, serverCert: Credentials): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  await fs.chmod(dir, 0o755);
  await fs.writeFile(path.join(dir, 'server.crt'), serverCert.certPem);
  await fs.writeFile(path.join(dir, 'server.key'), serverCert.keyPem);
  return dir;
}

/**
 * A fresh test database and data directory (`serverDir`) for one test, with `cleanups`, undone in
 * reverse order when the test ends (each failure ignored): what the test pushes, then the
 * directory, then the database.
 */
export async function testServerFiles(
  t: TestContext,
  prefix: string,
  serverCert: Credentials,
): Promise<{ db: TestDatabase; dir: string; cleanups: Array<() => Promise<unknown>> }> {
  const cleanups: Array<() => Promise<unknown>> = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  });
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  const dir = await serverDir(prefix, serverCert);
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
  return { db, dir, cleanups };
}

/**
 * `startServer` on the database at `databaseUrl`, data in `dir` (made by `serverDir`): HTTP and
 * MQTT on free ports of 127.0.0.1, the management admin's password and the verifier token of the
 * tests, quiet unless TEST_LOG_LEVEL says otherwise. `env` adds settings or replaces these.
 */
export function startTestServer(
  databaseUrl: string,
  dir: string,
  env: Record<string, string> = {},
  mode?: ServeMode,
  logger?: Logger,
): Promise<RunningServer> {
  return startServer(
    loadConfig({
      DATABASE_URL: databaseUrl,
      DATA_DIR: dir,
      HTTP_HOST: '127.0.0.1',
      HTTP_PORT: '0',
      MQTT_TLS_HOST: '127.0.0.1',
      MQTT_TLS_PORT: '0',
      MQTT_TLS_CERT: path.join(dir, 'server.crt'),
      MQTT_TLS_KEY: path.join(dir, 'server.key'),
      MANAGEMENT_ADMIN_PASSWORD: MANAGEMENT_PASSWORD,
      VERIFIER_TOKEN,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      ...env,
    }),
    mode,
    logger,
  );
}

/**
 * A tenant (admin `admin`, password TENANT_PASSWORD) trusting `pki.root` with auto-registration;
 * with `profile`, its default device profile updated with it (`clientIdPolicy`, `acl`...).
 */
export async function createTrustingTenant(
  baseUrl: string,
  pki: { tenantId: string; root: { certPem: string } },
  profile?: Record<string, unknown>,
): Promise<void> {
  const id = pki.tenantId;
  await apiOk(baseUrl, 'POST', '/tenant/tenants', MANAGEMENT_LOGIN, {
    id,
    company: `${id} Inc.`,
    domain: `${id}.example.com`,
    adminName: 'admin',
    adminPass: TENANT_PASSWORD,
  });
  await apiOk(baseUrl, 'POST', `/tenant/tenants/${id}/trusted-certificates`, tenantLogin(id), {
    name: 'devices',
    status: 'ENABLED',
    autoRegistrationEnabled: true,
    certInPemFormat: pki.root.certPem,
  });
  if (!profile) return;
  const profiles = await apiOk(baseUrl, 'GET', `/tenant/tenants/${id}/device-profiles`, tenantLogin(id));
  const byDefault = profiles.deviceProfiles.find((p: { default: boolean }) => p.default);
  await apiOk(baseUrl, 'PUT', `/tenant/tenants/${id}/device-profiles/${byDefault.id}`, tenantLogin(id), profile);
}
