/**
 * What the verifier tests share: requests through `app.inject`, a tenant with its CAs, profiles,
 * devices and credentials made through the REST API, and CRLs made with the openssl CLI.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import type { InjectOptions } from 'fastify';
import { createTenant, VERIFIER_TOKEN, type TestApp } from '../helpers/app.js';
import { createCa, type Credentials } from '../../src/certs/certs-service.js';

export interface Reply {
  status: number;
  body: any;
  text: string;
}

/** One request through `app.inject`, the JSON body parsed. */
export async function api(
  s: Pick<TestApp, 'app'>,
  method: InjectOptions['method'],
  url: string,
  auth: string | undefined,
  payload?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const res = await s.app.inject({
    method,
    url,
    headers: { ...(auth ? { authorization: auth } : {}), ...headers },
    ...(payload === undefined ? {} : { payload: payload as InjectOptions['payload'] }),
  });
  const json = String(res.headers['content-type'] ?? '').includes('json') && res.body !== '';
  return { status: res.statusCode, body: json ? JSON.parse(res.body) : res.body, text: res.body };
}

export interface AuthRequest {
  clientId: string;
  certificateChain: string[];
  username?: string;
  sni?: string;
}

/** POST /verifier/v1/authenticate with the verifier token. */
export function authenticate(s: Pick<TestApp, 'app'>, body: AuthRequest | Record<string, unknown>): Promise<Reply> {
  return api(s, 'POST', '/verifier/v1/authenticate', `Bearer ${VERIFIER_TOKEN}`, body);
}

/** Asserts a 200 allow and returns its body. */
export async function expectAllow(s: Pick<TestApp, 'app'>, body: AuthRequest, what = ''): Promise<any> {
  const res = await authenticate(s, body);
  assert.equal(res.status, 200, `${what}: ${res.text}`);
  assert.equal(res.body.result, 'allow', `${what}: expected allow, got ${res.text}`);
  return res.body;
}

/** Asserts a 200 deny with `reason` and returns its body. */
export async function expectDeny(s: Pick<TestApp, 'app'>, body: AuthRequest, reason: string, what = ''): Promise<any> {
  const res = await authenticate(s, body);
  assert.equal(res.status, 200, `${what}: ${res.text}`);
  assert.deepEqual({ result: res.body.result, reason: res.body.reason }, { result: 'deny', reason }, `${what}: ${res.text}`);
  assert.equal(typeof res.body.message, 'string');
  return res.body;
}

export interface Tenant {
  id: string;
  auth: string;
}

export async function tenant(s: TestApp, id: string): Promise<Tenant> {
  return { id, auth: await createTenant(s, id) };
}

/**
 * Tenant `acme` that accepts any client id and trusts a new CA (auto-registration on): the
 * starting point of most resolution tests.
 */
export async function trustingTenant(s: TestApp): Promise<{ acme: Tenant; ca: Credentials }> {
  const acme = await tenant(s, 'acme');
  await updateDefaultProfile(s, acme, { clientIdPolicy: 'ANY' });
  const ca = await createCa();
  await trust(s, acme, ca.certPem);
  return { acme, ca };
}

export interface TrustOptions {
  status?: 'ENABLED' | 'DISABLED';
  autoRegistrationEnabled?: boolean;
  deviceProfileId?: string;
}

/** Uploads a trusted certificate; returns its fingerprint. */
export async function trust(s: TestApp, t: Tenant, certPem: string, opts: TrustOptions = {}): Promise<string> {
  const res = await api(s, 'POST', `/tenant/tenants/${t.id}/trusted-certificates`, t.auth, {
    status: opts.status ?? 'ENABLED',
    autoRegistrationEnabled: opts.autoRegistrationEnabled ?? true,
    certInPemFormat: certPem,
    ...(opts.deviceProfileId ? { deviceProfileId: opts.deviceProfileId } : {}),
  });
  assert.equal(res.status, 201, res.text);
  return res.body.fingerprint;
}

export async function updateTrusted(s: TestApp, t: Tenant, fingerprint: string, body: Record<string, unknown>): Promise<void> {
  const res = await api(s, 'PUT', `/tenant/tenants/${t.id}/trusted-certificates/${fingerprint}`, t.auth, body);
  assert.equal(res.status, 200, res.text);
}

/** Creates a device profile; returns its id. */
export async function profile(s: TestApp, t: Tenant, body: Record<string, unknown>): Promise<string> {
  const res = await api(s, 'POST', `/tenant/tenants/${t.id}/device-profiles`, t.auth, { name: `profile-${Math.random().toString(36).slice(2, 8)}`, ...body });
  assert.equal(res.status, 201, res.text);
  return res.body.id;
}

/** The tenant's default profile, changed by `body`. */
export async function updateDefaultProfile(s: TestApp, t: Tenant, body: Record<string, unknown>): Promise<string> {
  const list = await api(s, 'GET', `/tenant/tenants/${t.id}/device-profiles?pageSize=100`, t.auth);
  const id = list.body.deviceProfiles.find((p: { default: boolean }) => p.default).id;
  const res = await api(s, 'PUT', `/tenant/tenants/${t.id}/device-profiles/${id}`, t.auth, body);
  assert.equal(res.status, 200, res.text);
  return id;
}

/** Creates a device through the API; returns its id. */
export async function device(s: TestApp, t: Tenant, body: { name: string } & Record<string, unknown>): Promise<string> {
  const res = await api(s, 'POST', `/tenant/tenants/${t.id}/devices`, t.auth, body);
  assert.equal(res.status, 201, res.text);
  return res.body.id;
}

export async function updateDevice(s: TestApp, t: Tenant, id: string, body: Record<string, unknown>): Promise<void> {
  const res = await api(s, 'PUT', `/tenant/tenants/${t.id}/devices/${id}`, t.auth, body);
  assert.equal(res.status, 200, res.text);
}

/** Lists a certificate for a device through the API; returns its credentialsId. */
export async function credential(s: TestApp, t: Tenant, deviceId: string, pem: string): Promise<string> {
  const res = await api(s, 'POST', `/tenant/tenants/${t.id}/devices/${deviceId}/credentials`, t.auth, {
    credentialsType: 'X509_CERTIFICATE',
    credentialsValue: pem,
  });
  assert.equal(res.status, 201, res.text);
  return res.body.credentialsId;
}

/** The devices of a tenant named `name`. */
export async function devicesNamed(s: TestApp, t: Tenant, name: string): Promise<any[]> {
  const res = await api(s, 'GET', `/tenant/tenants/${t.id}/devices?name=${encodeURIComponent(name)}&pageSize=100`, t.auth);
  assert.equal(res.status, 200, res.text);
  return res.body.devices;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns true or `timeoutMs` passes; returns how long it took. */
export async function eventually(
  probe: () => Promise<boolean>,
  timeoutMs = 2000,
  what: string | (() => string) = 'condition',
): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await probe()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) {
      assert.fail(`${typeof what === 'function' ? what() : what} not reached within ${timeoutMs} ms`);
    }
    await sleep(25);
  }
}

// ---------------------------------------------------------------------------------------------
// The openssl CLI

const run = promisify(execFile);

export async function tempDir(t: TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-verifier-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

export async function openssl(cwd: string, ...args: string[]): Promise<Buffer> {
  const { stdout } = await run('openssl', args, { cwd, encoding: 'buffer' });
  return stdout;
}

/** `YYMMDDHHMMSSZ`, the time format of openssl's CA database. */
function caDbTime(d: Date): string {
  return d.toISOString().replace(/^\d\d(\d\d)-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d).*$/, '$1$2$3$4$5$6Z');
}

/**
 * A CRL made by `openssl ca -gencrl` for `ca`, revoking `serials` (hex, as the certificates print
 * them): the CA database lists them as revoked (`R` lines, what `openssl ca -revoke` writes).
 */
export async function opensslCrl(
  t: TestContext,
  ca: Pick<Credentials, 'certPem' | 'keyPem'>,
  serials: string[],
  format: 'PEM' | 'DER' = 'PEM',
  opts: { crlNumber?: boolean } = {},
): Promise<Buffer> {
  const dir = await tempDir(t);
  await fs.writeFile(path.join(dir, 'ca.crt'), ca.certPem);
  await fs.writeFile(path.join(dir, 'ca.key'), ca.keyPem);
  const now = new Date();
  const expiry = new Date(now.getTime() + 365 * 86_400_000);
  const revoked = new Date(now.getTime() - 60_000);
  await fs.writeFile(
    path.join(dir, 'index.txt'),
    serials.map((s) => `R\t${caDbTime(expiry)}\t${caDbTime(revoked)}\t${s.toUpperCase()}\tunknown\t/CN=revoked-${s}\n`).join(''),
  );
  await fs.writeFile(path.join(dir, 'crlnumber'), '01\n');
  await fs.writeFile(
    path.join(dir, 'ca.cnf'),
    `[ ca ]
default_ca = CA_default
[ CA_default ]
dir = ${dir}
database = $dir/index.txt
${opts.crlNumber === false ? '' : 'crlnumber = $dir/crlnumber'}
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_md = sha256
default_crl_days = 30
crl_extensions = crl_ext
[ crl_ext ]
authorityKeyIdentifier = keyid:always
`,
  );
  await openssl(dir, 'ca', '-batch', '-gencrl', '-config', 'ca.cnf', '-out', 'crl.pem');
  if (format === 'PEM') return fs.readFile(path.join(dir, 'crl.pem'));
  return openssl(dir, 'crl', '-in', 'crl.pem', '-outform', 'DER');
}
