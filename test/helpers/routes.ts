/**
 * The routes of the OpenAPI document, a tenant full of real resources to point them at, and a
 * valid request body for every operation that takes one. The isolation and bad-input tests walk
 * every route with these; an operation they cannot fill in fails those tests, so no route is added
 * without being checked.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { createCa, createDevice, type Credentials } from '../../src/certs/certs-service.js';
import { basic, createTenant, VERIFIER_TOKEN, type TestApp } from './app.js';
import { call } from './requests.js';

export interface Operation {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';
  /** OpenAPI form: `/tenant/tenants/{tenantId}`. */
  path: string;
  operationId: string;
  /** Names of the path parameters. */
  pathParams: string[];
  /** Media types of the request body; empty when the operation takes none. */
  bodyTypes: string[];
  /** The JSON schema of an application/json body. */
  jsonSchema?: JsonSchema;
  spec: Record<string, any>;
}

export type JsonSchema = Record<string, any>;

/**
 * The document with every `#/components/schemas/...` reference replaced by the schema itself, so
 * tests can read each operation's schemas in place.
 */
export function dereference<T>(doc: T): T {
  const components: Record<string, unknown> = (doc as any)?.components?.schemas ?? {};
  const walk = (node: unknown, seen: readonly string[]): unknown => {
    if (Array.isArray(node)) return node.map((n) => walk(n, seen));
    if (!node || typeof node !== 'object') return node;
    const ref = (node as { $ref?: unknown }).$ref;
    if (typeof ref === 'string' && ref.startsWith('#/components/schemas/')) {
      const name = ref.slice('#/components/schemas/'.length);
      assert.ok(name in components, `unresolved ${ref}`);
      assert.ok(!seen.includes(name), `recursive schema ${name}`);
      return walk(components[name], [...seen, name]);
    }
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, walk(v, seen)]));
  };
  return walk(doc, []) as T;
}

export async function operationsOf(app: TestApp['app']): Promise<{ doc: Record<string, any>; operations: Operation[] }> {
  await app.ready();
  const doc = dereference(app.swagger() as Record<string, any>);
  const operations: Operation[] = [];
  for (const [path, item] of Object.entries<Record<string, any>>(doc.paths)) {
    for (const [method, spec] of Object.entries<Record<string, any>>(item)) {
      if (!['get', 'post', 'put', 'delete', 'patch'].includes(method)) continue;
      const content: Record<string, { schema?: JsonSchema }> = spec.requestBody?.content ?? {};
      operations.push({
        method: method.toUpperCase() as Operation['method'],
        path,
        operationId: spec.operationId,
        pathParams: [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!),
        bodyTypes: Object.keys(content),
        jsonSchema: content['application/json']?.schema,
        spec,
      });
    }
  }
  return { doc, operations };
}

/** Substitutes path parameters; an unknown one is a failure that names the route. */
export function fillPath(op: Operation, values: Record<string, string>): string {
  return op.path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const v = values[name];
    if (v === undefined) {
      assert.fail(`${op.method} ${op.path} (${op.operationId}): no value for path parameter {${name}}; teach test/helpers/routes.ts about it`);
    }
    return encodeURIComponent(v);
  });
}

/** A tenant with one of everything, made through the API. */
export interface SeededTenant {
  tenantId: string;
  company: string;
  admin: string;
  /** Path parameter values naming this tenant's real resources. */
  params: Record<string, string>;
  ca: Credentials;
  leaf: Credentials;
  /** Strings that appear only in this tenant's data: none may show up in another tenant's answers. */
  secrets: string[];
}

export async function seedTenant(s: TestApp, tenantId: string): Promise<SeededTenant> {
  const admin = await createTenant(s, tenantId);
  const company = `${tenantId} Inc.`;
  const tag = tenantId.replace(/[^a-z0-9]/g, '');
  const ok = (res: { status: number; text: string }, what: string) => assert.ok(res.status < 300, `${what}: ${res.status} ${res.text}`);

  const userName = `${tag}-operator`;
  ok(await call(s, 'POST', `/user/${tenantId}/users`, admin, { userName, password: `${tag}-operator-pass`, roles: ['ROLE_READONLY'] }), 'user');
  const ca = await createCa({ cn: `${tag} secret root CA` });
  ok(await call(s, 'POST', `/tenant/tenants/${tenantId}/trusted-certificates`, admin, { name: `${tag}-trusted-name`, status: 'ENABLED', certInPemFormat: ca.certPem }), 'trusted certificate');
  const profile = await call(s, 'POST', `/tenant/tenants/${tenantId}/device-profiles`, admin, { name: `${tag}-profile-name`, identity: { pattern: '^(.+)$' } });
  ok(profile, 'profile');
  const deviceName = `${tag}-device-name`;
  const device = await call(s, 'POST', `/tenant/tenants/${tenantId}/devices`, admin, { name: deviceName, deviceProfileId: profile.body.id });
  ok(device, 'device');
  const leaf = await createDevice({ issuer: ca, cn: deviceName });
  const credential = await call(s, 'POST', `/tenant/tenants/${tenantId}/devices/${device.body.id}/credentials`, admin, {
    credentialsType: 'X509_CERTIFICATE',
    credentialsValue: leaf.certPem,
  });
  ok(credential, 'credential');
  const serial = `5${crypto.randomBytes(7).toString('hex')}`;
  ok(await call(s, 'PUT', `/tenant/tenants/${tenantId}/trusted-certificates/settings/crl`, admin, { crls: [{ serialNumberInHex: serial, revocationDate: new Date().toISOString() }] }), 'revoked serial');

  // One decision of the verifier, so the tenant has an auth event.
  const decision = await call(s, 'POST', '/verifier/v1/authenticate', `Bearer ${VERIFIER_TOKEN}`, { clientId: deviceName, certificateChain: [leaf.certPem] });
  assert.equal(decision.status, 200, decision.text);
  await s.app.verifier.flush();

  return {
    tenantId,
    company,
    admin,
    params: {
      tenantId,
      userName,
      fingerprint: ca.fingerprintSha1,
      profileId: profile.body.id,
      deviceId: device.body.id,
      credentialsId: credential.body.credentialsId,
      serialNumberInHex: serial,
    },
    ca,
    leaf,
    secrets: [
      company,
      `${tag}-trusted-name`,
      `${tag} secret root CA`,
      `${tag}-profile-name`,
      deviceName,
      userName,
      ca.fingerprintSha1,
      profile.body.id,
      device.body.id,
      credential.body.credentialsId,
      Buffer.from(ca.certDer).toString('base64').slice(40, 100),
    ],
  };
}

export interface RequestBody {
  contentType: string;
  payload: string | Buffer | Record<string, unknown>;
}

export interface BodyMaterial {
  /** CAs and a leaf nobody has uploaded yet. */
  freshCa: Credentials;
  freshCa2: Credentials;
  freshLeaf: Credentials;
  /** Suffix making names unique per use. */
  unique: string;
}

export async function bodyMaterial(unique: string): Promise<BodyMaterial> {
  const [freshCa, freshCa2] = await Promise.all([createCa({ cn: `fresh CA ${unique}` }), createCa({ cn: `fresh CA 2 ${unique}` })]);
  return { freshCa, freshCa2, freshLeaf: await createDevice({ issuer: freshCa, cn: `fresh-device-${unique}` }), unique };
}

/**
 * A body each operation accepts (it passes validation and reaches the handler). Operations with
 * a request body that are missing here fail the tests that walk the routes.
 */
export const VALID_BODIES: Record<string, (m: BodyMaterial) => RequestBody> = {
  createTenant: (m) => json({ id: `new-${m.unique}`, company: 'New Inc.', domain: 'new.example.com', adminName: 'admin', adminPass: 'new-admin-pass' }),
  updateTenant: () => json({ company: 'Changed Inc.' }),
  createUser: (m) => json({ userName: `user-${m.unique}`, password: 'user-password', roles: ['ROLE_READONLY'] }),
  updateUser: () => json({ roles: ['ROLE_READONLY', 'ROLE_DEVICE_MANAGER'] }),
  createTrustedCertificate: (m) => json({ status: 'ENABLED', autoRegistrationEnabled: 'true', certInPemFormat: m.freshCa.certPem }),
  createTrustedCertificatesBulk: (m) => json({ certificates: [{ status: 'ENABLED', certInPemFormat: m.freshCa2.certPem }] }),
  updateTrustedCertificate: () => json({ name: 'changed-name', autoRegistrationEnabled: false }),
  proveProofOfPossession: () => json({ proofOfPossessionSignedVerificationCode: Buffer.from('not a signature').toString('base64') }),
  createDeviceProfile: (m) => json({ name: `profile-${m.unique}` }),
  updateDeviceProfile: () => json({ clientIdPolicy: 'ANY' }),
  createDevice: (m) => json({ name: `device-${m.unique}` }),
  updateDevice: () => json({ status: 'DISABLED' }),
  createDeviceCredential: (m) => json({ credentialsType: 'X509_CERTIFICATE', credentialsValue: m.freshLeaf.certPem }),
  updateDeviceCredential: () => json({ status: 'REVOKED' }),
  addRevokedSerials: () => json({ crls: [{ serialNumberInHex: '0a0b0c', revocationDate: '2026-01-01T00:00:00Z' }] }),
  importCrl: () => ({ contentType: 'application/pkix-crl', payload: Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]) }),
  authenticate: (m) => json({ clientId: `fresh-device-${m.unique}`, certificateChain: [m.freshLeaf.certPem] }),
  verifyCertChain: (m) => json({ certificateChain: m.freshLeaf.chainPem }),
  authorize: (m) => json({ clientid: `fresh-device-${m.unique}`, topic: 'devices/x/up', action: 'publish', tenant_id: 'acme', device_id: '00000000-0000-0000-0000-000000000000' }),
  vernemqWebhook: (m) => json({ client_id: `fresh-device-${m.unique}`, mountpoint: '', username: 'x', topic: 'devices/x/up', qos: 1, payload: '', retain: false }),
};

function json(payload: Record<string, unknown>): RequestBody {
  return { contentType: 'application/json', payload };
}

/** The body to send to `op`, or undefined when it takes none. */
export function validBodyFor(op: Operation, m: BodyMaterial): RequestBody | undefined {
  if (op.bodyTypes.length === 0) return undefined;
  const make = VALID_BODIES[op.operationId];
  if (!make) {
    assert.fail(`${op.method} ${op.path} (${op.operationId}) takes a request body that test/helpers/routes.ts VALID_BODIES does not know`);
  }
  return make(m);
}

/** How a route authenticates: Basic for everything but the verifier's bearer token. */
export function authFor(op: Operation, basicAuth: string): string {
  return (op.spec.security ?? []).some((s: Record<string, unknown>) => 'verifierToken' in s) ? `Bearer ${VERIFIER_TOKEN}` : basicAuth;
}

export { basic };
