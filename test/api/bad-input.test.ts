/**
 * Bad input on every write route of the OpenAPI document: unparsable JSON and
 * wrong types are 400, unknown fields 400, a 5 MB body 413, a broken or non-CA PEM 422, a
 * duplicate 409; the error body is always {error, message, info}; nothing answers 500; and after
 * each refusal the database is exactly as before.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { createCa, createDevice } from '../../src/certs/certs-service.js';
import { build, type TestApp } from '../helpers/app.js';
import { call, snapshotDatabase, type DatabaseSnapshot, type Reply } from '../helpers/requests.js';
import {
  authFor,
  bodyMaterial,
  fillPath,
  operationsOf,
  seedTenant,
  validBodyFor,
  type JsonSchema,
  type Operation,
  type SeededTenant,
} from '../helpers/routes.js';
import { CRL_BODY_LIMIT_BYTES } from '../../src/modules/revocation/revocation-router.js';

/** Operations that create something unique: the same body twice is a 409 the second time. */
const UNIQUE_CREATES = new Set([
  'createTenant',
  'createUser',
  'createTrustedCertificate',
  'createTrustedCertificatesBulk',
  'createDeviceProfile',
  'createDevice',
  'createDeviceCredential',
]);

/** Operations answering 201 that are not unique creations, and why. */
const REPEATABLE_CREATES: Record<string, string> = {
  importCrl: 'importing the same CRL again merges the same serials',
};

/** Operations that accept unknown fields, and why. */
const OPEN_BODIES: Record<string, string> = {
  authenticate: 'the verifier is called by MQTT brokers (EMQX\'s HTTP authenticator) whose request templates may add fields',
  vernemqWebhook: 'VerneMQ\'s webhooks send every field of the hook, and newer versions add fields',
  authorize: 'EMQX\'s HTTP authorizer sends the body template its operator wrote, which may hold more placeholders',
};

/**
 * Operations whose body the route schema leaves open and a second schema reads, chosen by a
 * header (the VerneMQ webhook: one route, one body shape per hook); their wrong types are checked
 * by their own tests.
 */
const SCHEMALESS_BODIES: Record<string, string> = {
  vernemqWebhook: 'the body is read per `vernemq-hook` (test/cluster/vernemq.test.ts checks the bad ones)',
};

/**
 * What a broken PEM (and, where a CA is required, a valid non-CA certificate) gets from each
 * operation with a PEM field. An operation with a PEM field that is missing here fails the test.
 */
const PEM_RULES: Record<string, { broken: Expectation; nonCa?: Expectation }> = {
  createTrustedCertificate: { broken: { status: 422 }, nonCa: { status: 422 } },
  createTrustedCertificatesBulk: { broken: { status: 422 }, nonCa: { status: 422 } },
  // A device credential is a leaf; any well-formed certificate is acceptable there.
  createDeviceCredential: { broken: { status: 422 } },
  // The verifier and its explanation answer a malformed chain with a decision, not an error.
  authenticate: { broken: { status: 200, reason: 'MALFORMED_CERTIFICATE' } },
  verifyCertChain: { broken: { status: 200, reason: 'MALFORMED_CERTIFICATE' } },
};

interface Expectation {
  status: number;
  /** For 200 answers of the verifier: the deny reason. */
  reason?: string;
}

const BROKEN_PEM = '-----BEGIN CERTIFICATE-----\nMIIBbroken/not+base64!!\n-----END CERTIFICATE-----\n';
const FIVE_MB = 5 * 1024 * 1024;

interface Context {
  s: TestApp;
  acme: SeededTenant;
}

function actorFor(c: Context, op: Operation): string {
  return authFor(op, op.operationId === 'createTenant' ? c.s.management : c.acme.admin);
}

/** Headers an operation needs besides its body (the VerneMQ webhook names its hook in one). */
const HEADERS: Record<string, Record<string, string>> = {
  vernemqWebhook: { 'vernemq-hook': 'auth_on_publish' },
};

async function send(c: Context, op: Operation, payload: string | Buffer | undefined, contentType = 'application/json'): Promise<Reply> {
  const headers = { ...HEADERS[op.operationId], ...(payload === undefined ? {} : { 'content-type': contentType }) };
  const res = await call(c.s, op.method, fillPath(op, c.acme.params), actorFor(c, op), payload, headers);
  // The verifier records its decisions behind the answer; write them now so snapshots see them.
  await c.s.app.verifier.flush();
  return res;
}

function assertErrorShape(res: Reply, what: string): void {
  assert.notEqual(res.status, 500, `${what}: 500`);
  assert.equal(typeof res.body, 'object', `${what}: JSON error body: ${res.text.slice(0, 200)}`);
  for (const key of ['error', 'message', 'info']) assert.equal(typeof res.body[key], 'string', `${what}: error body has "${key}"`);
  assert.match(res.body.error, /^[a-z][A-Za-z]*\/[A-Z][A-Za-z]*$/, `${what}: error is "<area>/<Reason>"`);
}

/** Refused with `status`, the error shape, and the database exactly as before. */
async function assertRefused(c: Context, before: DatabaseSnapshot, res: Reply, status: number, what: string): Promise<void> {
  assert.equal(res.status, status, `${what}: expected ${status}, got ${res.status}: ${res.text.slice(0, 300)}`);
  assertErrorShape(res, what);
  assert.deepEqual(await snapshotDatabase(c.s.prisma), before, `${what}: the database changed`);
}

/** JSON types a schema accepts. */
function acceptedTypes(schema: JsonSchema): Set<string> {
  const out = new Set<string>();
  const add = (s: JsonSchema) => {
    if (s.anyOf || s.oneOf) for (const x of s.anyOf ?? s.oneOf) add(x);
    if (s.allOf) for (const x of s.allOf) add(x);
    if (s.const !== undefined) out.add(jsonType(s.const));
    if (s.enum) for (const v of s.enum) out.add(jsonType(v));
    if (s.type) for (const t of [s.type].flat()) out.add(t === 'integer' ? 'number' : t);
    if (!s.type && !s.enum && s.const === undefined && !s.anyOf && !s.oneOf && !s.allOf) {
      for (const t of ['string', 'number', 'boolean', 'array', 'object', 'null']) out.add(t);
    }
  };
  add(schema);
  return out;
}

function jsonType(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

const WRONG_VALUES: unknown[] = [12345, 'wrong-type', true, ['x'], { x: 1 }, null];

function wrongValueFor(schema: JsonSchema): unknown {
  const ok = acceptedTypes(schema);
  return WRONG_VALUES.find((v) => !ok.has(jsonType(v)));
}

/** Every (path, wrong value) to try: each property, and each property of nested objects and array items. */
function wrongTypeCases(schema: JsonSchema, valid: Record<string, unknown>): Array<{ field: string; body: Record<string, unknown> }> {
  const cases: Array<{ field: string; body: Record<string, unknown> }> = [];
  for (const [name, prop] of Object.entries<JsonSchema>(schema.properties ?? {})) {
    const wrong = wrongValueFor(prop);
    if (wrong !== undefined) cases.push({ field: name, body: { ...valid, [name]: wrong } });
    const objectSchema = prop.type === 'object' ? prop : prop.type === 'array' && prop.items?.type === 'object' ? prop.items : undefined;
    if (!objectSchema?.properties) continue;
    const base = (prop.type === 'array' ? (valid[name] as Array<Record<string, unknown>> | undefined)?.[0] : valid[name]) as Record<string, unknown> | undefined;
    for (const [sub, subSchema] of Object.entries<JsonSchema>(objectSchema.properties)) {
      const w = wrongValueFor(subSchema);
      if (w === undefined) continue;
      const inner = { ...(base ?? {}), [sub]: w };
      cases.push({ field: `${name}.${sub}`, body: { ...valid, [name]: prop.type === 'array' ? [inner] : inner } });
    }
  }
  return cases;
}

/** Names of string properties that carry PEM, at any depth. */
function pemFields(schema: JsonSchema | undefined, prefix = ''): string[] {
  if (!schema) return [];
  const out: string[] = [];
  for (const [name, prop] of Object.entries<JsonSchema>(schema.properties ?? {})) {
    const path = `${prefix}${name}`;
    const items = prop.type === 'array' ? prop.items : undefined;
    if (/PEM/.test(String(prop.description ?? '')) || /pem/i.test(name)) out.push(path);
    else if (items?.type === 'object') out.push(...pemFields(items, `${path}[].`));
    else if (prop.type === 'object') out.push(...pemFields(prop, `${path}.`));
  }
  return out;
}

/** The valid body with every PEM field replaced by `pem`. */
function withPem(body: Record<string, unknown>, fields: string[], pem: string): Record<string, unknown> {
  const out = structuredClone(body);
  for (const field of fields) {
    const [head, rest] = field.split('[].');
    if (rest !== undefined) {
      for (const item of out[head!] as Array<Record<string, unknown>>) item[rest] = pem;
    } else if (Array.isArray(out[field])) {
      out[field] = [pem];
    } else {
      out[field] = pem;
    }
  }
  return out;
}

async function setup(t: TestContext): Promise<Context & { operations: Operation[] }> {
  const s = await build(t);
  const acme = await seedTenant(s, 'acme');
  const { operations } = await operationsOf(s.app);
  return { s, acme, operations };
}

const writes = (ops: Operation[]) => ops.filter((o) => o.method === 'POST' || o.method === 'PUT' || o.method === 'PATCH');

test('every write route: unparsable JSON, non-object bodies, other media types and wrong types are 400/415, and change nothing', async (t) => {
  const c = await setup(t);
  const m = await bodyMaterial('types');
  let checked = 0;
  for (const op of writes(c.operations)) {
    const before = await snapshotDatabase(c.s.prisma);
    const name = `${op.method} ${op.path} (${op.operationId})`;
    if (!op.bodyTypes.includes('application/json')) {
      if (op.bodyTypes.length === 0) continue;
      // A route that takes something else refuses JSON: as a media type it does not handle, or as content it cannot read.
      const res = await send(c, op, '{"a":1}');
      await assertRefused(c, before, res, res.status === 415 ? 415 : 422, `${name}: JSON body`);
      continue;
    }
    for (const [what, text] of [
      ['a truncated object', '{"name": '],
      ['a trailing comma', '{"a": 1,}'],
      ['single quotes', "{'a': 1}"],
      ['bare words', 'hello'],
      ['an empty body', ''],
      ['a prototype-polluting key', '{"__proto__": {"admin": true}}'],
    ] as const) {
      await assertRefused(c, before, await send(c, op, text), 400, `${name}: ${what}`);
    }
    for (const text of ['[]', '"text"', '42', 'true', 'null']) {
      await assertRefused(c, before, await send(c, op, text), 400, `${name}: body ${text}`);
    }
    await assertRefused(c, before, await send(c, op, '<a>xml</a>', 'application/xml'), 415, `${name}: XML`);

    const valid = validBodyFor(op, m)!.payload as Record<string, unknown>;
    const cases = wrongTypeCases(op.jsonSchema!, valid);
    if (op.operationId in SCHEMALESS_BODIES) continue;
    assert.ok(cases.length > 0, `${name}: has fields to get wrong`);
    for (const { field, body } of cases) {
      const res = await send(c, op, JSON.stringify(body));
      await assertRefused(c, before, res, 400, `${name}: wrong type for ${field}`);
      assert.equal(res.body.error, 'validation/InvalidRequest');
      const top = field.split('.')[0]!;
      assert.ok(
        res.body.details.some((d: { field: string }) => d.field.includes(top)) || res.body.message.includes(top),
        `${name}: the error names ${field}: ${res.text}`,
      );
    }
    checked++;
  }
  assert.ok(checked >= 14, `JSON write routes checked: ${checked}`);
});

test('every write route: unknown fields are 400 naming the field, and change nothing', async (t) => {
  const c = await setup(t);
  const m = await bodyMaterial('unknown');
  for (const op of writes(c.operations)) {
    if (!op.bodyTypes.includes('application/json')) continue;
    const name = `${op.method} ${op.path} (${op.operationId})`;
    const valid = validBodyFor(op, m)!.payload as Record<string, unknown>;
    const before = await snapshotDatabase(c.s.prisma);
    const res = await send(c, op, JSON.stringify({ ...valid, unexpectedField: 'x' }));
    if (OPEN_BODIES[op.operationId]) {
      assert.ok(res.status < 400, `${name}: accepts unknown fields (${OPEN_BODIES[op.operationId]}): ${res.text}`);
      continue;
    }
    await assertRefused(c, before, res, 400, `${name}: unknown field`);
    assert.match(res.text, /unexpectedField/, `${name}: the error names the unknown field`);
  }
});

test('every write route: a 5 MB body is 413 and changes nothing (the CRL import: a body over its own limit)', async (t) => {
  const c = await setup(t);
  const huge = 'A'.repeat(FIVE_MB);
  for (const op of writes(c.operations)) {
    const name = `${op.method} ${op.path} (${op.operationId})`;
    const before = await snapshotDatabase(c.s.prisma);
    const contentType = op.bodyTypes.includes('application/json') || op.bodyTypes.length === 0 ? 'application/json' : op.bodyTypes[0]!;
    // A CRL of 100,000 entries is ~4.7 MB of PEM: its import takes bodies up to CRL_BODY_LIMIT_BYTES.
    const size = op.operationId === 'importCrl' ? CRL_BODY_LIMIT_BYTES + 1 : FIVE_MB;
    const payload = contentType === 'application/json' ? JSON.stringify({ certInPemFormat: huge, name: huge }) : Buffer.alloc(size, 0x30);
    const res = await send(c, op, payload, contentType);
    await assertRefused(c, before, res, 413, `${name}: 5 MB`);
    assert.equal(res.body.error, 'request/BodyTooLarge');
  }
});

test('every route taking a PEM: broken PEM is 422 (or the verifier\'s deny), a non-CA where a CA is required 422', async (t) => {
  const c = await setup(t);
  const root = await createCa({ cn: 'bad-input root' });
  const leaf = await createDevice({ issuer: root, cn: 'not-a-ca' });
  const m = await bodyMaterial('pem');
  let withPemFields = 0;
  for (const op of writes(c.operations)) {
    const fields = pemFields(op.jsonSchema);
    if (fields.length === 0) continue;
    withPemFields++;
    const name = `${op.method} ${op.path} (${op.operationId})`;
    const rule = PEM_RULES[op.operationId];
    assert.ok(rule, `${name} takes PEM in ${fields.join(', ')}; add what it answers to PEM_RULES`);
    const valid = validBodyFor(op, m)!.payload as Record<string, unknown>;
    // Only the PEM fields the valid body uses: a route may take the same PEM under two names,
    // one at a time (verify-cert-chain's `chain` and `certificateChain`).
    const used = fields.filter((f) => f.split('[].')[0]! in valid);
    assert.ok(used.length > 0, `${name}: the valid body uses one of ${fields.join(', ')}`);
    const cases: Array<[string, string, Expectation | undefined]> = [
      ['a broken PEM', BROKEN_PEM, rule.broken],
      ['text that is no PEM', 'hello world', rule.broken],
      ['a non-CA certificate', leaf.certPem, rule.nonCa],
    ];
    for (const [what, pem, expected] of cases) {
      if (!expected) continue;
      const before = await snapshotDatabase(c.s.prisma);
      const res = await send(c, op, JSON.stringify(withPem(valid, used, pem)));
      if (expected.status === 200) {
        assert.equal(res.status, 200, `${name}: ${what}: ${res.text}`);
        assert.equal(res.body.reason, expected.reason, `${name}: ${what}`);
        assert.equal(res.body.decision ?? res.body.result, 'deny');
        // A chain that does not parse names no tenant, so not even an auth event is written.
        assert.deepEqual(await snapshotDatabase(c.s.prisma), before, `${name}: ${what}: the database changed`);
      } else {
        await assertRefused(c, before, res, expected.status, `${name}: ${what}`);
        assert.match(res.body.message, new RegExp(used[0]!.replace('[].', '.*')), `${name}: ${what}: the message names the field`);
      }
    }
  }
  assert.equal(withPemFields, Object.keys(PEM_RULES).length, 'every PEM rule belongs to a route that takes PEM');

  // A CRL import takes a CRL, not JSON: a broken one is a 422.
  const importCrl = c.operations.find((o) => o.operationId === 'importCrl');
  assert.ok(importCrl, 'the CRL import route exists');
  for (const [what, payload, type] of [
    ['broken DER', Buffer.from([0x30, 0x82, 0xff]), 'application/pkix-crl'],
    ['a certificate instead of a CRL', Buffer.from(root.certDer), 'application/pkix-crl'],
    ['broken PEM', '-----BEGIN X509 CRL-----\nbroken\n-----END X509 CRL-----\n', 'application/x-pem-file'],
  ] as const) {
    const before = await snapshotDatabase(c.s.prisma);
    await assertRefused(c, before, await send(c, importCrl, payload, type), 422, `importCrl: ${what}`);
  }
});

test('every unique creation: the same body twice is a 409 the second time, and the second changes nothing', async (t) => {
  const c = await setup(t);
  const m = await bodyMaterial('dup');
  const creations = c.operations.filter((o) => o.method === 'POST' && o.spec.responses?.['201']);
  for (const op of creations) {
    assert.ok(
      UNIQUE_CREATES.has(op.operationId) || REPEATABLE_CREATES[op.operationId],
      `${op.operationId} answers 201: add it to UNIQUE_CREATES or to REPEATABLE_CREATES with why`,
    );
  }
  for (const id of UNIQUE_CREATES) assert.ok(creations.some((o) => o.operationId === id), `${id} is a creation route`);

  for (const op of creations.filter((o) => UNIQUE_CREATES.has(o.operationId))) {
    const body = JSON.stringify(validBodyFor(op, m)!.payload);
    const first = await send(c, op, body);
    assert.equal(first.status, 201, `${op.operationId}: first time: ${first.text}`);
    const before = await snapshotDatabase(c.s.prisma);
    const second = await send(c, op, body);
    await assertRefused(c, before, second, 409, `${op.operationId}: second time`);
    assert.match(second.body.error, /\/Duplicate$/);
  }
});

test('every route: oversized or odd path parameters are 400 or 404, never a 500', async (t) => {
  const c = await setup(t);
  const m = await bodyMaterial('params');
  for (const op of c.operations.filter((o) => o.pathParams.length > 0)) {
    for (const param of op.pathParams) {
      for (const value of ['x'.repeat(300), '%00', '..', "' OR '1'='1", '\u{1F600}']) {
        const url = fillPath(op, { ...c.acme.params, [param]: value });
        const body = validBodyFor(op, m);
        const before = await snapshotDatabase(c.s.prisma);
        const res = await call(
          c.s,
          op.method,
          url,
          actorFor(c, op),
          body === undefined ? undefined : Buffer.isBuffer(body.payload) ? body.payload : JSON.stringify(body.payload),
          body ? { 'content-type': body.contentType } : {},
        );
        const what = `${op.operationId} with {${param}} = ${JSON.stringify(value.slice(0, 20))}`;
        assert.ok(res.status === 400 || res.status === 404, `${what}: ${res.status} ${res.text.slice(0, 200)}`);
        await assertRefused(c, before, res, res.status, what);
      }
    }
  }
});
