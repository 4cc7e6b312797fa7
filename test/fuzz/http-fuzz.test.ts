/**
 * Property-based fuzzing of every write route over real HTTP, on a real PostgreSQL.
 *
 * Each case takes a valid request for one route (the bodies of test/helpers/routes.ts) and
 * changes one thing: a field's value (NUL and control characters, lone surrogates, huge numbers,
 * values of the wrong JSON type), the whole body (broken or deeply nested JSON), the bytes of a
 * PEM or CRL (DER mutations), a certificate with a crafted key, an identity regex, a path
 * parameter, the query, the media type or the credentials. For every case:
 * - no 5xx answer;
 * - an error answer has string `error`, `message` and `info`;
 * - no request takes longer than FUZZ_MAX_MS (default 3 s; the slowest is printed), three times
 *   that where the server checks or hashes a password (scrypt, slow by design);
 * - a refused write leaves the database as it was (no transaction at all, or the same rows);
 * and /health answers throughout, polled alongside.
 *
 * FUZZ_RUNS (default 10,000) sets the number of cases, FUZZ_SEED the seed (fixed by default, so
 * CI runs the same cases every time; a failure prints the seed and the path to replay it).
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { build, VERIFIER_TOKEN } from '../helpers/app.js';
import {
  craftedKey,
  exponentOneKey,
  makeCrl,
  makeLeaf,
  makeRoot,
  offCurveP256Spki,
  rsaSpki,
  type TestCert,
} from '../helpers/pki-fixtures.js';
import { basic, bodyMaterial, fillPath, operationsOf, seedTenant, VALID_BODIES, type Operation } from '../helpers/routes.js';
import { hostileRawJson, hostileRegex, hostileString, hostileValue, pemMutation } from './generators.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);
const SEED = Number(process.env.FUZZ_SEED ?? 15_2026);
const MAX_MS = Number(process.env.FUZZ_MAX_MS ?? 3000);

/** Routes that hash a password (scrypt, ~60-100 ms by design) when they accept: fuzzed a third as often. */
const HASHES_PASSWORDS = new Set(['createTenant', 'createUser', 'updateUser']);

type Path = Array<string | number>;

type Mutation =
  | { kind: 'set'; path: Path; value: unknown }
  | { kind: 'drop'; path: Path }
  | { kind: 'extra'; key: string; value: unknown }
  | { kind: 'pem'; path: Path; value: string }
  | { kind: 'pattern'; value: string }
  | { kind: 'body'; text: string; contentType: string }
  | { kind: 'binary'; bytes: Uint8Array; contentType: string }
  | { kind: 'param'; name: string; value: string; raw: boolean }
  | { kind: 'query'; text: string }
  | { kind: 'contentType'; value: string }
  | { kind: 'auth'; header: string }
  | { kind: 'chainHeader'; value: string };

interface Request {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
}

/** Every path into a JSON value (objects and arrays), the value itself excluded. */
function pathsOf(v: unknown, prefix: Path = []): Path[] {
  const out: Path[] = [];
  if (Array.isArray(v)) v.forEach((x, i) => out.push([...prefix, i], ...pathsOf(x, [...prefix, i])));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push([...prefix, k], ...pathsOf(x, [...prefix, k]));
  return out;
}

function setPath(root: any, path: Path, value: unknown): void {
  let o = root;
  for (const k of path.slice(0, -1)) o = o[k];
  o[path[path.length - 1]!] = value;
}

function dropPath(root: any, path: Path): void {
  let o = root;
  for (const k of path.slice(0, -1)) o = o[k];
  if (Array.isArray(o)) o.splice(Number(path[path.length - 1]), 1);
  else delete o[path[path.length - 1]!];
}

const isPem = (v: unknown) => typeof v === 'string' && v.includes('-----BEGIN');

/** Paths of PEM text in a body: strings with armour, and arrays of them (`certificateChain`). */
function pemPaths(body: unknown): Path[] {
  return pathsOf(body).filter((p) => {
    let o: any = body;
    for (const k of p) o = o[k];
    return isPem(o);
  });
}

// A run takes about a minute on an idle 2-core machine, several on a loaded one: the runner's
// default timeout is not this test's.
test(`HTTP fuzz: ${RUNS} hostile requests on every write route; no 5xx, the error shape, no slow request, refused writes change nothing`, { timeout: 30 * 60_000 }, async (t) => {
  const s = await build(t);
  const acme = await seedTenant(s, 'acme');
  const material = await bodyMaterial('fuzz');
  const { operations } = await operationsOf(s.app);
  await s.app.listen({ host: '127.0.0.1', port: 0 });
  const port = (s.app.server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}`;

  // A root whose key the suite holds, trusted by acme, so CRLs signed by it reach the importer.
  const root = makeRoot({ subject: 'CN=Fuzz Root,O=Acme' });
  const uploaded = await fetch(`${base}/tenant/tenants/acme/trusted-certificates`, {
    method: 'POST',
    headers: { authorization: acme.admin, 'content-type': 'application/json' },
    body: JSON.stringify({ status: 'ENABLED', certInPemFormat: root.pem }),
  });
  const uploadedText = await uploaded.text();
  assert.equal(uploaded.status, 201, uploadedText);
  const rootFingerprint = (JSON.parse(uploadedText) as { fingerprint: string }).fingerprint;
  const crl = makeCrl({ issuer: root, revoked: [{ serialHex: '0a0b' }] });

  // Certificates with crafted keys and other flaws: each must be refused, or decided, cleanly.
  const crafted: TestCert[] = [
    makeRoot({ key: exponentOneKey() }),
    makeRoot({ key: craftedKey('ec', offCurveP256Spki()) }),
    makeRoot({ key: craftedKey('rsa', rsaSpki((1n << 2047n) + 1n, (1n << 3070n) + 1n)) }),
    makeRoot({ key: craftedKey('rsa', rsaSpki((1n << 2047n) + 1n, 4n)) }),
    makeRoot({ key: 'rsa-1024' }),
    makeRoot({ key: 'ec-p192' }),
    makeRoot({ key: 'ed25519' }),
    makeRoot({ signatureHash: 'SHA-1' }),
    makeRoot({ version: 1 }),
    makeRoot({ basicConstraints: false }),
    makeRoot({ keyUsage: [] }),
    makeRoot({ unknownCriticalExtension: true }),
    makeRoot({ tamperSignature: true }),
    makeRoot({ notAfter: new Date('2001-01-01T00:00:00Z'), notBefore: new Date('2000-01-01T00:00:00Z') }),
    makeRoot({ subject: 'CN=nul\u0000name' }),
    makeRoot({ subject: '' }),
    makeRoot({ serial: new Uint8Array(40).fill(0x7f) }),
    makeRoot({ serial: Uint8Array.from([0xff, 0x01]) }),
    makeLeaf(root, { subject: `CN=${'a'.repeat(61)}` }),
    makeLeaf(root, { subject: 'CN=dev\u0000ice' }),
  ];
  const craftedPem = fc.constantFrom(...crafted.map((c) => c.pem), crafted.map((c) => c.pem).join(''));
  const ders = [root.der, material.freshLeaf.certDer, crl.der, ...crafted.slice(0, 4).map((c) => c.der)].map((d) => new Uint8Array(d));
  const mutatedPem = pemMutation(ders);

  const writes = operations.filter((o) => ['POST', 'PUT', 'PATCH', 'DELETE'].includes(o.method));
  const params: Record<string, string> = { ...acme.params, fingerprint: rootFingerprint };

  function baseRequest(op: Operation): { body: unknown; contentType?: string } {
    if (op.bodyTypes.length === 0) return { body: undefined };
    const valid = VALID_BODIES[op.operationId]?.(material);
    if (op.operationId === 'importCrl') return { body: crl.der, contentType: 'application/pkix-crl' };
    if (!valid) return { body: {}, contentType: 'application/json' };
    return { body: valid.payload, contentType: valid.contentType };
  }

  function authOf(op: Operation): string {
    if ((op.spec.security ?? []).some((x: Record<string, unknown>) => 'verifierToken' in x)) return `Bearer ${VERIFIER_TOKEN}`;
    return op.operationId === 'createTenant' ? s.management : acme.admin;
  }

  function mutations(op: Operation): fc.Arbitrary<Mutation> {
    const { body } = baseRequest(op);
    const param = op.pathParams.length
      ? fc.record({
          kind: fc.constant('param' as const),
          name: fc.constantFrom(...op.pathParams),
          value: fc.oneof(hostileString, fc.constantFrom('%E0%A4%A', '%ZZ', '%C0%80', '..%2F..', '%2e%2e', 'x'.repeat(600))),
          raw: fc.boolean(),
        })
      : undefined;
    // A DELETE with real parameters would remove the resources the other cases aim at.
    if (op.method === 'DELETE') return param!;
    // Weighted: a login the server has to check costs a deliberately slow scrypt, so those are rare.
    const options: Array<fc.WeightedArbitrary<Mutation>> = [];
    const add = (weight: number, arbitrary: fc.Arbitrary<Mutation>) => options.push({ weight, arbitrary });
    for (const arbitrary of [
      fc.record({ kind: fc.constant('query' as const), text: fc.oneof(hostileString, fc.constantFrom('pageSize=1e999', 'a=%00', '%', 'a[b]=c&a[b]=d', '&&&')) }),
      fc.record({
        kind: fc.constant('contentType' as const),
        value: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', 'application/json; charset=latin1', 'multipart/form-data; boundary=x', 'application/pkix-crl', '*/*', 'application/json;;'),
      }),
    ]) add(3, arbitrary);
    add(
      4,
      fc.record({
        kind: fc.constant('auth' as const),
        header: fc.oneof(
          fc.constantFrom('Basic', 'Basic !!!', 'Basic ' + 'A'.repeat(3000), 'Bearer x', `Bearer ${VERIFIER_TOKEN}x`, 'Digest a=b', basic('acme\u0000/admin', 'x'), basic('acme/admin', '\u0000')),
          hostileString.map((l) => basic(`${l}`.replace(/\//g, ''), 'x')),
        ),
      }),
    );
    add(1, fc.tuple(hostileString, hostileString).map(([l, p]) => ({ kind: 'auth' as const, header: basic(`fuzz/${l}`, p) })));
    if (param) add(12, param);
    if (body instanceof Uint8Array) {
      add(12, fc.record({ kind: fc.constant('binary' as const), bytes: fc.uint8Array({ maxLength: 600 }), contentType: fc.constantFrom('application/pkix-crl', 'application/x-pem-file') }));
      add(12, mutatedPem.map((text) => ({ kind: 'body' as const, text, contentType: 'application/x-pem-file' })));
      add(18, mutatedPem.map((text) => ({ kind: 'binary' as const, bytes: pemToDer(text), contentType: 'application/pkix-crl' })));
    } else if (body !== undefined) {
      const paths = pathsOf(body);
      const top = Object.keys((op.jsonSchema?.properties as object) ?? {}).map((k) => [k] as Path);
      const all = [...paths, ...top];
      if (all.length) {
        add(24, fc.record({ kind: fc.constant('set' as const), path: fc.constantFrom(...all), value: hostileValue }));
        add(6, fc.record({ kind: fc.constant('drop' as const), path: fc.constantFrom(...all) }));
      }
      add(9, fc.record({ kind: fc.constant('extra' as const), key: hostileString, value: hostileValue }));
      add(12, fc.record({ kind: fc.constant('body' as const), text: hostileRawJson, contentType: fc.constant('application/json') }));
      const pems = pemPaths(body);
      if (pems.length) {
        add(18, fc.record({ kind: fc.constant('pem' as const), path: fc.constantFrom(...pems), value: mutatedPem }));
        add(12, fc.record({ kind: fc.constant('pem' as const), path: fc.constantFrom(...pems), value: craftedPem }));
      }
      if (op.operationId === 'createDeviceProfile' || op.operationId === 'updateDeviceProfile') {
        add(24, fc.record({ kind: fc.constant('pattern' as const), value: hostileRegex }));
      }
      if (op.operationId === 'verifyCertChain') {
        add(
          12,
          fc.record({
            kind: fc.constant('chainHeader' as const),
            value: fc.oneof(mutatedPem, craftedPem).map((p) => p.replace(/[^\x20-\x7e]/g, '').replace(/\s+/g, ' ')),
          }),
        );
      }
    }
    return fc.oneof(...options);
  }

  function requestFor(op: Operation, m: Mutation): Request {
    const { body, contentType } = baseRequest(op);
    const values = { ...params };
    let path = fillPath(op, values);
    if (m.kind === 'param') {
      const value = m.raw ? m.value.replace(/[\s?#]/g, '') || '%00' : percentEncode(m.value);
      path = op.path.replace(/\{(\w+)\}/g, (_, p: string) => (p === m.name ? value : encodeURIComponent(values[p] ?? '')));
    }
    if (m.kind === 'query') path += `?${m.text.replace(/[\s#]/g, '')}`;
    const headers: Record<string, string> = { authorization: authOf(op) };
    if (m.kind === 'auth') headers.authorization = m.header;
    let payload: string | Uint8Array | undefined;
    if (body instanceof Uint8Array) {
      payload = body;
      if (contentType) headers['content-type'] = contentType;
    } else if (body !== undefined) {
      const json = structuredClone(body) as any;
      if (m.kind === 'set') setPath(json, m.path, m.value);
      if (m.kind === 'drop') dropPath(json, m.path);
      if (m.kind === 'extra') json[m.key] = m.value;
      if (m.kind === 'pem') setPath(json, m.path, m.value);
      if (m.kind === 'pattern') json.identity = { ...(json.identity ?? {}), pattern: m.value };
      payload = JSON.stringify(json);
      headers['content-type'] = 'application/json';
    }
    if (m.kind === 'body') {
      payload = m.text;
      headers['content-type'] = m.contentType;
    }
    if (m.kind === 'binary') {
      payload = m.bytes;
      headers['content-type'] = m.contentType;
    }
    if (m.kind === 'contentType' && payload !== undefined) headers['content-type'] = m.value;
    if (m.kind === 'chainHeader') headers['x-cumulocity-client-cert-chain'] = m.value;
    return { method: op.method, path, headers, body: payload };
  }

  // The database: a transaction id that has not moved means nothing was written at all; when it
  // moved, a refused write must leave every row as it was.
  const tables = (
    await s.prisma.$queryRawUnsafe<Array<{ table_name: string }>>(
      `SELECT table_name FROM information_schema.tables
        WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> '_prisma_migrations' ORDER BY table_name`,
    )
  ).map((r) => r.table_name);
  const snapshotSql = tables
    .map((name) => `SELECT '${name}' AS t, count(*)::int AS n, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS d FROM "${name}" x`)
    .join(' UNION ALL ');
  /** Row counts and a digest of every row, per table, in one statement. */
  const snapshot = async (): Promise<Record<string, string>> =>
    Object.fromEntries((await s.prisma.$queryRawUnsafe<Array<{ t: string; n: number; d: string }>>(snapshotSql)).map((r) => [r.t, `${r.n} rows, ${r.d}`]));
  const xmax = async () =>
    (await s.prisma.$queryRawUnsafe<Array<{ x: string }>>('SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x'))[0]!.x;
  let baseline = await snapshot();
  let lastXid = await xmax();

  // /health, polled alongside the whole run.
  let polling = true;
  const health = { polls: 0, slowestMs: 0, failures: [] as string[] };
  const poller = (async () => {
    while (polling) {
      const start = performance.now();
      try {
        const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(MAX_MS * 3) });
        if (res.status !== 200) health.failures.push(`status ${res.status}`);
        await res.arrayBuffer();
      } catch (err) {
        health.failures.push(String(err));
      }
      health.slowestMs = Math.max(health.slowestMs, performance.now() - start);
      health.polls++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();

  const stats = { cases: 0, unsendable: 0, statuses: new Map<number, number>(), slowestMs: 0, slowest: '', slowestHashingMs: 0, writesChecked: 0, snapshots: 0 };
  const perKind = new Map<string, { n: number; ms: number }>();
  const describe = (op: Operation, m: Mutation) => `${op.operationId} ${JSON.stringify(m, (_k, v) => (typeof v === 'string' && v.length > 120 ? `${v.slice(0, 120)}...(${v.length})` : v instanceof Uint8Array ? `<${v.length} bytes>` : v))}`;

  t.diagnostic(`fuzz: ${RUNS} cases, seed ${SEED} (FUZZ_SEED to replay), bound ${MAX_MS} ms, ${writes.length} write operations: ${writes.map((o) => o.operationId).join(', ')}`);
  const started = performance.now();
  try {
    await fc.assert(
      fc.asyncProperty(
        fc
          .oneof(...writes.map((op) => ({ weight: HASHES_PASSWORDS.has(op.operationId) ? 1 : 3, arbitrary: fc.constant(op) })))
          .chain((op) => fc.tuple(fc.constant(op), mutations(op))),
        async ([op, m]) => {
          const req = requestFor(op, m);
          const what = describe(op, m);
          const start = performance.now();
          let res: Response;
          try {
            res = await fetch(`${base}${req.path}`, { method: req.method, headers: req.headers, body: req.body as string | undefined });
          } catch (err) {
            // fetch refuses to send some values (a header it cannot encode): nothing reached the server.
            if (err instanceof TypeError && !String((err as { cause?: unknown }).cause ?? '').includes('ECONN')) {
              stats.unsendable++;
              return;
            }
            throw err;
          }
          const text = await res.text();
          const ms = performance.now() - start;
          stats.cases++;
          const k = perKind.get(`${m.kind}`) ?? { n: 0, ms: 0 };
          k.n++;
          k.ms += ms;
          perKind.set(m.kind, k);
          stats.statuses.set(res.status, (stats.statuses.get(res.status) ?? 0) + 1);
          if (ms > stats.slowestMs) {
            stats.slowestMs = ms;
            stats.slowest = what;
          }
          assert.ok(res.status < 500, `${what}: ${res.status} ${text.slice(0, 300)}`);
          // A password check or hash is scrypt, slow by design and slower still on a loaded machine.
          const hashes = HASHES_PASSWORDS.has(op.operationId) || m.kind === 'auth';
          if (hashes) stats.slowestHashingMs = Math.max(stats.slowestHashingMs, ms);
          assert.ok(ms < (hashes ? 3 * MAX_MS : MAX_MS), `${what}: took ${ms.toFixed(0)} ms`);
          if (res.status >= 400) {
            let body: any;
            try {
              body = JSON.parse(text);
            } catch {
              assert.fail(`${what}: ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`);
            }
            for (const key of ['error', 'message', 'info']) assert.equal(typeof body[key], 'string', `${what}: "${key}" in ${text.slice(0, 300)}`);
          }
          // The verifier records its decisions behind the answer.
          if (op.path.startsWith('/verifier/')) await s.app.verifier.flush();
          const xid = await xmax();
          if (xid !== lastXid) {
            stats.snapshots++;
            const now = await snapshot();
            if (res.status >= 400) {
              stats.writesChecked++;
              assert.deepEqual(now, baseline, `${what}: refused with ${res.status} but the database changed`);
            }
            baseline = now;
            lastXid = await xmax();
          }
        },
      ),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    );
  } finally {
    polling = false;
    await poller;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const statuses = [...stats.statuses].sort(([a], [b]) => a - b).map(([k, v]) => `${k}:${v}`).join(' ');
    t.diagnostic(`fuzz: ${stats.cases} requests in ${seconds} s (${stats.unsendable} unsendable by fetch); statuses ${statuses}`);
    t.diagnostic(`fuzz: slowest request ${stats.slowestMs.toFixed(0)} ms: ${stats.slowest.slice(0, 300)}`);
    t.diagnostic(`fuzz: slowest request checking or hashing a password (bound ${3 * MAX_MS} ms): ${stats.slowestHashingMs.toFixed(0)} ms`);
    t.diagnostic(`fuzz: refused requests that opened a write transaction, checked row by row: ${stats.writesChecked}; snapshots ${stats.snapshots}`);
    t.diagnostic(`fuzz: mean ms per kind: ${[...perKind].map(([k, v]) => `${k} ${v.n}x${(v.ms / v.n).toFixed(1)}`).join(', ')}`);
    t.diagnostic(`fuzz: /health polled ${health.polls} times, slowest ${health.slowestMs.toFixed(0)} ms, ${health.failures.length} failures`);
  }
  assert.deepEqual(health.failures.slice(0, 5), [], '/health answered throughout');
  assert.ok(health.slowestMs < MAX_MS, `/health took ${health.slowestMs.toFixed(0)} ms`);
  assert.ok(stats.cases >= RUNS * 0.95, `${stats.cases} of ${RUNS} cases were sent`);
});

/** Percent-encodes the UTF-8 bytes of `v` (a lone surrogate becomes U+FFFD, as on the wire). */
function percentEncode(v: string): string {
  return [...Buffer.from(v, 'utf8')].map((b) => (/[A-Za-z0-9_.~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0').toUpperCase()}`)).join('');
}

function pemToDer(pem: string): Uint8Array {
  return new Uint8Array(Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64'));
}
