/**
 * Hostile HTTP input, one test per finding: the request that was bad, and the answer now.
 * Regexes that hung or froze the API, U+0000 that reached PostgreSQL, dates it cannot store, a
 * Host header echoed into links, and error bodies of Fastify's router and Node's HTTP parser
 * that lacked `{error, message, info}`. Raw sockets send what a client library would not.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { build, createTenant, type TestApp } from '../helpers/app.js';
import { makeRoot } from '../helpers/pki-fixtures.js';
import { basic } from '../helpers/app.js';
import { call, snapshotDatabase, type Reply } from '../helpers/requests.js';
import { operationsOf, seedTenant } from '../helpers/routes.js';

interface RawReply {
  status: number;
  headers: Record<string, string>;
  body: any;
  text: string;
}

/** Sends `request` as is on a new connection and reads the answer until the server closes it. */
async function raw(port: number, request: string | Buffer): Promise<RawReply> {
  const data = await new Promise<Buffer>((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    socket.setTimeout(20_000, () => socket.destroy(new Error('no answer within 20 s')));
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', (err) => (chunks.length ? resolve(Buffer.concat(chunks)) : reject(err)));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.write(request);
  });
  const text = data.toString('utf8');
  const split = text.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = text.slice(0, split).split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
  const bodyText = text.slice(split + 4);
  let body: unknown = bodyText;
  try {
    body = JSON.parse(bodyText);
  } catch {
    // left as text; the shape assertion reports it
  }
  return { status: Number(statusLine!.split(' ')[1]), headers, body, text: bodyText };
}

function assertShape(res: RawReply | Reply, what: string): void {
  assert.equal(typeof res.body, 'object', `${what}: a JSON body: ${res.text.slice(0, 200)}`);
  for (const key of ['error', 'message', 'info']) assert.equal(typeof res.body[key], 'string', `${what}: "${key}" in ${res.text.slice(0, 300)}`);
  assert.match(res.body.error, /^[a-z][A-Za-z]*\/[A-Z][A-Za-z]*$/, `${what}: error is <area>/<Reason>`);
}

async function listen(s: TestApp): Promise<number> {
  await s.app.listen({ host: '127.0.0.1', port: 0 });
  return (s.app.server.address() as net.AddressInfo).port;
}

/** Polls /health until stopped; the slowest answer and any failure are reported. */
function pollHealth(port: number): { stop: () => Promise<{ polls: number; slowestMs: number; failures: string[] }> } {
  let running = true;
  let polls = 0;
  let slowestMs = 0;
  const failures: string[] = [];
  const loop = (async () => {
    while (running) {
      const start = performance.now();
      try {
        const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(10_000) });
        if (res.status !== 200) failures.push(`status ${res.status}`);
        await res.arrayBuffer();
      } catch (err) {
        failures.push(String(err));
      }
      slowestMs = Math.max(slowestMs, performance.now() - start);
      polls++;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { polls, slowestMs, failures };
    },
  };
}

async function setup(t: TestContext, opts: Parameters<typeof build>[1] = {}): Promise<TestApp & { admin: string }> {
  const s = await build(t, opts);
  return { ...s, admin: await createTenant(s, 'acme') };
}

const PROFILES = '/tenant/tenants/acme/device-profiles';

test('hostile identity patterns: `^(a|\\1a)*$` and `a{99999999999}` are 422, `^(a?){25}a{25}$` is linear; /health answers throughout', async (t) => {
  const s = await setup(t);
  const port = await listen(s);
  const health = pollHealth(port);
  const post = (name: string, pattern: string) =>
    fetch(`http://127.0.0.1:${port}${PROFILES}`, {
      method: 'POST',
      headers: { authorization: s.admin, 'content-type': 'application/json' },
      body: JSON.stringify({ name, identity: { pattern } }),
    });

  // Before: recheck's analysis crashed on these and its synchronous check never returned.
  for (const [pattern, message] of [
    ['^(a|\\1a)*$', /RE2 syntax is required.*backreference `\\1`/],
    ['a{99999999999}', /too large/],
  ] as const) {
    const res = await post(`p${pattern.length}`, pattern);
    const body = (await res.json()) as Record<string, string>;
    assert.equal(res.status, 422, `${pattern}: ${JSON.stringify(body)}`);
    assert.equal(body.error, 'deviceProfile/InvalidPattern');
    assert.match(body.message!, message);
  }
  // Before: judged safe by recheck, then one match of a 61-character CN took seconds.
  const created = await post('nested-optional', '^(a?){25}a{25}$');
  assert.equal(created.status, 201, await created.clone().text());
  const profileId = ((await created.json()) as { id: string }).id;

  const root = makeRoot({ subject: 'CN=Hostile Pattern Root' });
  const trusted = await call(s, 'POST', '/tenant/tenants/acme/trusted-certificates', s.admin, {
    status: 'ENABLED',
    certInPemFormat: root.pem,
    deviceProfileId: profileId,
  });
  assert.equal(trusted.status, 201, trusted.text);
  const { makeLeaf } = await import('../helpers/pki-fixtures.js');
  const leaf = makeLeaf(root, { subject: `CN=${'a'.repeat(61)}` });
  let slowest = 0;
  for (let i = 0; i < 5; i++) {
    const start = performance.now();
    const res = await fetch(`http://127.0.0.1:${port}/tenant/tenants/acme/trusted-certificates/verify-cert-chain`, {
      method: 'POST',
      headers: { authorization: s.admin, 'content-type': 'application/json' },
      body: JSON.stringify({ chain: leaf.pem }),
    });
    slowest = Math.max(slowest, performance.now() - start);
    const body = (await res.json()) as { decision: string; reason: string };
    assert.equal(res.status, 200);
    assert.equal(body.decision, 'deny');
    assert.equal(body.reason, 'IDENTITY_NOT_FOUND');
  }
  const polled = await health.stop();
  t.diagnostic(`slowest explain ${slowest.toFixed(0)} ms; /health polled ${polled.polls} times, slowest ${polled.slowestMs.toFixed(0)} ms`);
  assert.deepEqual(polled.failures, [], '/health answered every poll');
  assert.ok(polled.polls > 0);
  // A backtracking match of this CN took 3.5 s (23.7 s cold) per call; RE2 takes about a
  // millisecond (test/pki/identity.test.ts times the match itself). The bound is for five calls
  // in a row on a loaded machine.
  assert.ok(slowest < 5000, `verify-cert-chain took ${slowest.toFixed(0)} ms`);
});

test('U+0000 anywhere in a request is a 400 before the database: credentials, path, query, JSON fields and keys', async (t) => {
  const s = await setup(t);
  const acme = await seedTenant(s, 'nulco');
  const before = await snapshotDatabase(s.prisma);
  const cases: Array<[string, Promise<Reply>, string?]> = [
    ['Basic login', call(s, 'GET', '/tenant/tenants/acme/devices', basic('acme/ad\u0000min', 'tenant-admin-pass'))],
    ['Basic password', call(s, 'GET', '/tenant/tenants/acme/devices', basic('acme/admin', 'x\u0000'))],
    ['path tenant id', call(s, 'GET', '/tenant/tenants/ac%00me/devices', s.admin), 'path.tenantId'],
    ['path device id', call(s, 'GET', '/tenant/tenants/acme/devices/%00', s.admin), 'path.deviceId'],
    ['path user name', call(s, 'DELETE', '/user/acme/users/a%00b', s.admin), 'path.userName'],
    ['path fingerprint', call(s, 'GET', '/tenant/tenants/acme/trusted-certificates/ab%00cd', s.admin), 'path.fingerprint'],
    ['query name filter', call(s, 'GET', '/tenant/tenants/acme/devices?name=a%00b', s.admin), 'query.name'],
    ['query deviceName filter', call(s, 'GET', '/tenant/tenants/acme/auth-events?deviceName=%00', s.admin), 'query.deviceName'],
    ['device name', call(s, 'POST', '/tenant/tenants/acme/devices', s.admin, { name: 'dev\u00001' }), 'body.name'],
    ['tenant company', call(s, 'POST', '/tenant/tenants', s.management, { company: 'A\u0000', domain: 'a.example.com', adminName: 'admin', adminPass: 'admin-pass-1' }), 'body.company'],
    ['user name', call(s, 'POST', '/user/acme/users', s.admin, { userName: 'u\u0000', password: 'password-1', roles: ['ROLE_READONLY'] }), 'body.userName'],
    ['profile name', call(s, 'PUT', `${PROFILES}/${acme.params.profileId}`, s.admin, { name: '\u0000' })],
    ['ACL template in an array', call(s, 'POST', PROFILES, s.admin, { name: 'p', acl: { publish: ['ok/#', 'a/\u0000'] } }), 'body.acl.publish.1'],
    ['trusted certificate name', call(s, 'POST', '/tenant/tenants/acme/trusted-certificates', s.admin, { name: 'ca\u0000', status: 'ENABLED', certInPemFormat: 'x' }), 'body.name'],
    ['a key', call(s, 'POST', '/tenant/tenants/acme/devices', s.admin, JSON.stringify({ name: 'd', 'k\u0000': 1 }), { 'content-type': 'application/json' })],
    ['verifier client id', call(s, 'POST', '/verifier/v1/authenticate', `Bearer ${(await import('../helpers/app.js')).VERIFIER_TOKEN}`, { clientId: 'd\u0000', certificateChain: [acme.leaf.certPem] }), 'body.clientId'],
  ];
  for (const [what, pending, field] of cases) {
    const res = await pending;
    assert.equal(res.status, 400, `${what}: ${res.status} ${res.text}`);
    assertShape(res, what);
    assert.equal(res.body.error, 'request/InvalidCharacter', what);
    assert.match(res.body.message, /U\+0000/, what);
    if (field) assert.ok(res.body.message.startsWith(field), `${what}: names ${field}: ${res.body.message}`);
  }
  await s.app.verifier.flush();
  assert.deepEqual(await snapshotDatabase(s.prisma), before, 'nothing changed');
});

test('a CA certificate whose subject holds U+0000 is a 422 at upload, alone or in a bulk', async (t) => {
  const s = await setup(t);
  const evil = makeRoot({ subject: 'CN=evil\u0000root,O=Acme' });
  const before = await snapshotDatabase(s.prisma);
  const one = await call(s, 'POST', '/tenant/tenants/acme/trusted-certificates', s.admin, { status: 'ENABLED', certInPemFormat: evil.pem });
  assert.equal(one.status, 422, one.text);
  assertShape(one, 'upload');
  assert.equal(one.body.error, 'trustedCertificate/NotAcceptable');
  assert.match(one.body.message, /subject contains U\+0000/);
  const bulk = await call(s, 'POST', '/tenant/tenants/acme/trusted-certificates/bulk', s.admin, {
    certificates: [{ status: 'ENABLED', certInPemFormat: evil.pem }],
  });
  assert.equal(bulk.status, 422, bulk.text);
  assert.deepEqual(await snapshotDatabase(s.prisma), before);
});

test('dates PostgreSQL cannot store are a 400: year 0000 and expanded years, in query filters and bodies', async (t) => {
  const s = await setup(t);
  const before = await snapshotDatabase(s.prisma);
  for (const since of ['0000-01-01', '0000-01-01T00:00:00Z', '+275760-09-13T00:00:00Z', '9999-12-31T23:59:59-14:00', '2024-02-30T00:00:00Z']) {
    const res = await call(s, 'GET', `/tenant/tenants/acme/auth-events?since=${encodeURIComponent(since)}`, s.admin);
    assert.equal(res.status, 400, `since=${since}: ${res.text}`);
    assertShape(res, `since=${since}`);
  }
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme/auth-events?since=2024-01-01T00:00:00%2B02:00', s.admin)).status, 200);
  const crl = '/tenant/tenants/acme/trusted-certificates/settings/crl';
  for (const revocationDate of ['0000-01-01', '0000-12-31T23:59:59Z', '+275760-09-13', '+275760-09-13T00:00:00Z', '9999-12-31T23:59:59-14:00', '-000001-01-01']) {
    const res = await call(s, 'PUT', crl, s.admin, { crls: [{ serialNumberInHex: '0a', revocationDate }] });
    assert.equal(res.status, 400, `revocationDate ${revocationDate}: ${res.text}`);
    assertShape(res, revocationDate);
  }
  assert.deepEqual(await snapshotDatabase(s.prisma), before);
  for (const revocationDate of ['0001-01-01', '9999-12-31T23:59:59Z', '2026-01-01']) {
    const res = await call(s, 'PUT', crl, s.admin, { crls: [{ serialNumberInHex: '0a', revocationDate }] });
    assert.equal(res.status, 200, `revocationDate ${revocationDate}: ${res.text}`);
  }
});

/** Every paged list: its path filled in for the seeded tenant. */
async function listPaths(s: TestApp, params: Record<string, string>): Promise<Array<{ path: string; management: boolean }>> {
  const { operations } = await operationsOf(s.app);
  return operations
    .filter((o) => o.method === 'GET' && JSON.stringify(o.spec.responses?.['200'] ?? {}).includes('"statistics"'))
    .map((o) => ({ path: o.path.replace(/\{(\w+)\}/g, (_, p: string) => params[p]!), management: o.operationId === 'listTenants' }));
}

test('self/next/prev links: a Host of x:99999 no longer fails every list; invalid Hosts fall back to the listening address', async (t) => {
  const s = await setup(t);
  const acme = await seedTenant(s, 'hostco');
  const port = await listen(s);
  const lists = await listPaths(s, acme.params);
  assert.ok(lists.length >= 6, `paged lists: ${lists.map((l) => l.path).join(', ')}`);
  const get = (path: string, host: string, auth: string) =>
    raw(port, `GET ${path}?pageSize=1 HTTP/1.1\r\nHost: ${host}\r\nAuthorization: ${auth}\r\nConnection: close\r\n\r\n`);
  for (const { path, management } of lists) {
    const auth = management ? s.management : acme.admin;
    for (const host of ['x:99999', 'x:0', 'evil.example/path', 'a@b', 'x:1:2', '[zz]']) {
      const res = await get(path, host, auth);
      assert.equal(res.status, 200, `${path} with Host ${host}: ${res.status} ${res.text.slice(0, 200)}`);
      assert.ok(res.body.self.startsWith(`http://127.0.0.1:${port}/`), `${path} with Host ${host}: self ${res.body.self}`);
    }
    const valid = await get(path, 'certgate.example.com:8443', auth);
    assert.ok(valid.body.self.startsWith('http://certgate.example.com:8443/'), `a valid Host is used: ${valid.body.self}`);
  }
  // A request target in absolute form: its path and query only make the links.
  const absolute = await raw(
    port,
    `GET http://evil.example:99999/tenant/tenants/hostco/devices?pageSize=1 HTTP/1.1\r\nHost: x:99999\r\nAuthorization: ${acme.admin}\r\nConnection: close\r\n\r\n`,
  );
  assert.ok(absolute.status < 500, `absolute form: ${absolute.status} ${absolute.text.slice(0, 200)}`);
  if (absolute.status === 200) assert.equal(absolute.body.self, `http://127.0.0.1:${port}/tenant/tenants/hostco/devices?pageSize=1&currentPage=1`);
  else assertShape(absolute, 'absolute form');
});

test('self/next/prev links come from PUBLIC_URL when it is set, path prefix included', async (t) => {
  const s = await setup(t, { publicUrl: 'https://certgate.example.com/api/' });
  for (const name of ['d1', 'd2']) assert.equal((await call(s, 'POST', '/tenant/tenants/acme/devices', s.admin, { name })).status, 201);
  const res = await call(s, 'GET', '/tenant/tenants/acme/devices?pageSize=1&currentPage=2', s.admin, undefined, { host: 'x:99999' });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.body.self, 'https://certgate.example.com/api/tenant/tenants/acme/devices?pageSize=1&currentPage=2');
  assert.equal(res.body.prev, 'https://certgate.example.com/api/tenant/tenants/acme/devices?pageSize=1&currentPage=1');
  const device = await call(s, 'GET', '/tenant/tenants/acme/device-profiles', s.admin);
  assert.ok(device.body.deviceProfiles[0].self.startsWith('https://certgate.example.com/api/tenant/tenants/acme/device-profiles/'));
});

test('every error body has {error, message, info}: router errors, 414, 431, malformed request lines, 415, bad JSON, 413, 417', async (t) => {
  const s = await setup(t);
  const port = await listen(s);
  const auth = `Authorization: ${s.admin}\r\n`;
  const post = (path: string, type: string, body: string) =>
    `POST ${path} HTTP/1.1\r\nHost: localhost\r\n${auth}Content-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
  const cases: Array<[string, string | Buffer, number, string?]> = [
    ['bad percent-encoding in the path', `GET /tenant/tenants/%E0%A4%A/devices HTTP/1.1\r\nHost: localhost\r\n${auth}Connection: close\r\n\r\n`, 400, 'request/BadUrl'],
    ['bad percent-encoding, unknown route', 'GET /%ZZ%ff HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', 400, 'request/BadUrl'],
    ['unknown route', 'GET /no/such/route HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', 404, 'general/NotFound'],
    ['a path parameter over 500 characters (414)', `GET /tenant/tenants/acme/devices/${'x'.repeat(600)} HTTP/1.1\r\nHost: localhost\r\n${auth}Connection: close\r\n\r\n`, 414, 'request/UriTooLong'],
    ['headers over 16 KB (431)', `GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'request/HeadersTooLarge'],
    ['a request line that is not HTTP', 'HELLO THERE\r\n\r\n', 400, 'request/Malformed'],
    ['an unknown HTTP version', 'GET /health HTTP/9.9\r\nHost: localhost\r\n\r\n', 400, 'request/Malformed'],
    ['a header line without a colon', 'GET /health HTTP/1.1\r\nHost localhost\r\n\r\n', 400, 'request/Malformed'],
    ['a NUL byte in a header', 'GET /health HTTP/1.1\r\nHost: local\u0000host\r\n\r\n', 400, 'request/Malformed'],
    ['conflicting lengths', 'POST /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'request/Malformed'],
    ['binary garbage', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x01, 0x00, 0x00, 0x0d, 0x0a, 0x0d, 0x0a]), 400, 'request/Malformed'],
    ['a media type the route does not take (415)', post('/tenant/tenants/acme/devices', 'text/xml', '<d/>'), 415, 'request/UnsupportedMediaType'],
    ['unparsable JSON', post('/tenant/tenants/acme/devices', 'application/json', '{"name":'), 400, 'request/BadRequest'],
    ['a body over the limit (413)', post('/tenant/tenants/acme/devices', 'application/json', JSON.stringify({ name: 'x'.repeat(1_100_000) })), 413, 'request/BodyTooLarge'],
    ['an Expect header other than 100-continue (417)', `GET /health HTTP/1.1\r\nHost: localhost\r\nExpect: teapot\r\nConnection: close\r\n\r\n`, 417, 'request/ExpectationFailed'],
  ];
  for (const [what, request, status, error] of cases) {
    const res = await raw(port, request);
    assert.equal(res.status, status, `${what}: ${res.status} ${res.text.slice(0, 200)}`);
    assert.match(res.headers['content-type'] ?? '', /^application\/json/, `${what}: JSON`);
    assertShape(res, what);
    if (error) assert.equal(res.body.error, error, what);
  }
  // The server is still answering after all of that.
  assert.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200);
});
