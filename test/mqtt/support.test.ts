/**
 * The listener's supporting parts: topic rules, the batching connection recorder, the server
 * certificate made under the data directory, and the remote (HTTP) verifier.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { createConnectionRecorder } from '../../src/mqtt/connection-recorder.js';
import { resolveServerTls } from '../../src/mqtt/server-tls.js';
import { deniesTopic, filterCovers, isValidTopicFilter, isValidTopicName, mayPublish, maySubscribe, readDenied, topicMatches } from '../../src/mqtt/topics.js';
import { RetainedTree, SubscriptionTree } from '../../src/mqtt/topic-tree.js';
import { createRemoteVerifier } from '../../src/verifier/remote-verifier.js';
import { VerifierUnavailableError, type AclRule, type Decision } from '../../src/verifier/verifier-types.js';
import { sleep, tempDir } from './harness.js';

describe('topics', () => {
  test('ok/validation: names without wildcards, filters with whole-level wildcards', () => {
    for (const t of ['a', 'a/b', '/a', 'a/', '$SYS/x', 'a//b']) assert.equal(isValidTopicName(t), true, t);
    for (const t of ['', 'a/+', 'a/#', 'a\u0000b', 'a/'.repeat(200)]) assert.equal(isValidTopicName(t), false, t);
    assert.equal(isValidTopicName('a/'.repeat(127) + 'a'), true);
    assert.equal(isValidTopicFilter('+/'.repeat(500) + '#'), false);
    for (const f of ['#', '+', 'a/#', 'a/+/b', '+/+', '/#']) assert.equal(isValidTopicFilter(f), true, f);
    for (const f of ['', 'a#', 'a/#/b', 'a/b+', '#/a', 'a/++']) assert.equal(isValidTopicFilter(f), false, f);
  });

  const matches: Array<[string, string, boolean]> = [
    ['a/#', 'a', true],
    ['a/#', 'a/b/c', true],
    ['a/+', 'a/b', true],
    ['a/+', 'a/b/c', false],
    ['+/+', '/x', true],
    ['#', '$SYS/x', false],
    ['+/x', '$SYS/x', false],
    ['$SYS/#', '$SYS/x', true],
    ['a/b', 'a/b', true],
    ['a/b', 'a/b/', false],
  ];
  test('ok/matching: MQTT 4.7 rules, `$` topics out of reach of leading wildcards', () => {
    for (const [f, t, want] of matches) assert.equal(topicMatches(f, t), want, `${f} ~ ${t}`);
    const tree = new SubscriptionTree<string, number>();
    matches.forEach(([f], i) => tree.add(f, `s${i}`, i));
    for (const [, t] of matches) {
      const got: number[] = [];
      tree.match(t, (_s, i) => got.push(i));
      const want = matches.map(([f], i) => [f, i] as const).filter(([f]) => topicMatches(f, t)).map(([, i]) => i);
      assert.deepEqual(got.sort(), want.sort(), `tree for ${t}`);
    }
    const retained = new RetainedTree<string>();
    for (const t of ['a', 'a/b', 'a/b/c', '$SYS/x', '/x']) retained.set(t, t);
    for (const f of ['a/#', '#', '+/+', '+', '$SYS/+', 'a/+/c']) {
      const got: string[] = [];
      retained.match(f, (v) => got.push(v));
      const want = ['a', 'a/b', 'a/b/c', '$SYS/x', '/x'].filter((t) => topicMatches(f, t));
      assert.deepEqual(got.sort(), want.sort(), `retained for ${f}`);
    }
    assert.equal(retained.delete('a/b'), true);
    assert.equal(retained.get('a/b/c'), 'a/b/c');
    assert.equal(retained.size, 4);
  });

  test('ok/matching: every filter of up to 3 levels against every topic of up to 3 levels, as MQTT 4.7 says', () => {
    // The rule written out level by level (MQTT 4.7.1, 4.7.2), against the matcher working in place.
    const rule = (filter: string, topic: string): boolean => {
      if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
      const f = filter.split('/');
      const t = topic.split('/');
      for (let i = 0; i < f.length; i++) {
        if (f[i] === '#') return true;
        if (i >= t.length) return false;
        if (f[i] !== '+' && f[i] !== t[i]) return false;
      }
      return f.length === t.length;
    };
    const combine = (levels: string[], max: number): string[] => {
      let out = levels.slice();
      let all = out.slice();
      for (let n = 2; n <= max; n++) {
        out = out.flatMap((s) => levels.map((l) => `${s}/${l}`));
        all = all.concat(out);
      }
      return all;
    };
    const topics = combine(['', 'a', 'b', 'ab', '$s'], 3);
    const filters = combine(['', 'a', 'b', 'ab', '+', '#', '$s'], 3);
    let matched = 0;
    for (const f of filters) {
      for (const t of topics) {
        const want = rule(f, t);
        assert.equal(topicMatches(f, t), want, `${f} ~ ${t}`);
        if (want) matched++;
      }
    }
    assert.ok(matched > 1000, `${matched} matching pairs`);
  });

  test('ok/acl: publish by match, subscribe only when the whole filter is covered', () => {
    const acl: AclRule[] = [
      { permission: 'allow', action: 'publish', topic: 'devices/dev1/#' },
      { permission: 'allow', action: 'subscribe', topic: 'devices/dev1/+/cmd' },
      { permission: 'allow', action: 'subscribe', topic: 'tenant/broadcast' },
    ];
    assert.equal(mayPublish(acl, 'devices/dev1/x/y'), true);
    assert.equal(mayPublish(acl, 'devices/dev1'), true);
    assert.equal(mayPublish(acl, 'devices/dev2/x'), false);
    assert.equal(mayPublish(acl, 'tenant/broadcast'), false, 'subscribe rules do not allow publishing');
    assert.equal(maySubscribe(acl, 'devices/dev1/a/cmd'), true);
    assert.equal(maySubscribe(acl, 'devices/dev1/+/cmd'), true);
    assert.equal(maySubscribe(acl, 'devices/dev1/#'), false);
    assert.equal(maySubscribe(acl, 'devices/+/a/cmd'), false);
    assert.equal(maySubscribe(acl, 'tenant/broadcast'), true);
    assert.equal(maySubscribe(acl, 'tenant/+'), false);
    assert.equal(filterCovers('a/#', 'a'), true);
    assert.equal(filterCovers('#', '$SYS/#'), false);
    assert.equal(filterCovers('+/#', 'a/+/b'), true);
    assert.equal(filterCovers('a/+', 'a/#'), false);
  });

  test('ok/acl-deny: deny rules before allow rules win; the final deny of everything is not a read deny', () => {
    const acl: AclRule[] = [
      { permission: 'deny', action: 'publish', topic: 'cfg/+' },
      { permission: 'deny', action: 'subscribe', topic: 'test/nosubscribe' },
      { permission: 'deny', action: 'subscribe', topic: 'secret/#' },
      { permission: 'allow', action: 'publish', topic: '#' },
      { permission: 'allow', action: 'subscribe', topic: '#' },
      { permission: 'deny', action: 'all', topic: '#' },
    ];
    assert.equal(mayPublish(acl, 'cfg/a'), false);
    assert.equal(mayPublish(acl, 'cfg/a/b'), true, '`+` is one level');
    assert.equal(mayPublish(acl, 'test/nosubscribe'), true, 'a subscribe deny does not refuse publishing');
    assert.equal(maySubscribe(acl, 'test/nosubscribe'), false);
    assert.equal(maySubscribe(acl, 'secret/+/x'), false, 'covered by the deny filter');
    assert.equal(maySubscribe(acl, 'secret'), false, '`secret/#` covers its parent level');
    assert.equal(maySubscribe(acl, '#'), true, 'wider than the deny filters: decided by the allow rules');
    assert.equal(maySubscribe(acl, 'test/+'), true);
    assert.equal(maySubscribe(acl, 'cfg/a'), true, 'a publish deny does not refuse subscribing');
    const denied = readDenied(acl);
    assert.deepEqual(denied, ['test/nosubscribe', 'secret/#']);
    assert.equal(deniesTopic(denied!, 'test/nosubscribe'), true);
    assert.equal(deniesTopic(denied!, 'secret'), true);
    assert.equal(deniesTopic(denied!, 'secret/a/b'), true);
    assert.equal(deniesTopic(denied!, 'test/other'), false);
    assert.equal(readDenied(acl.slice(3)), undefined, 'an allow-list with its final deny has none: no per-message check');
  });
});

describe('connection recorder', () => {
  test('ok/coalesce: a storm of connections becomes one write per interval with the latest time per device', async () => {
    const batches: Array<Map<string, Date>> = [];
    const rec = createConnectionRecorder({ intervalMs: 50, flush: async (b) => void batches.push(b) });
    for (let i = 0; i < 1_000; i++) rec.connected('acme', `d${i % 10}`, new Date(1_000 + i));
    await sleep(120);
    assert.equal(batches.length, 1);
    assert.equal(batches[0]!.size, 10);
    assert.equal(batches[0]!.get('d3')!.getTime(), 1_000 + 993);
    rec.connected('acme', 'd1', new Date(5_000));
    await rec.close();
    assert.equal(batches.length, 2);
    assert.deepEqual([...batches[1]!.keys()], ['d1']);
  });

  test('ok/retry: a failed flush keeps its entries for the next one; newer times win', async () => {
    let fail = true;
    const written: Array<Map<string, Date>> = [];
    const errors: number[] = [];
    const rec = createConnectionRecorder({
      intervalMs: 20,
      flush: async (b) => {
        if (fail) throw new Error('db down');
        written.push(b);
      },
      onError: (_e, n) => errors.push(n),
    });
    rec.connected('acme', 'a', new Date(1));
    await rec.flush();
    assert.deepEqual(errors, [1]);
    rec.connected('acme', 'a', new Date(2));
    rec.connected('acme', 'b', new Date(3));
    fail = false;
    await rec.flush();
    assert.deepEqual([...written[0]!.entries()].map(([k, v]) => [k, v.getTime()]), [
      ['a', 2],
      ['b', 3],
    ]);
    await rec.close();
  });

  test('ok/max-pending: a full batch is written without waiting for the timer', async () => {
    const batches: number[] = [];
    const rec = createConnectionRecorder({ intervalMs: 60_000, maxPending: 100, flush: async (b) => void batches.push(b.size) });
    for (let i = 0; i < 250; i++) rec.connected('acme', `d${i}`, new Date());
    await sleep(20);
    assert.deepEqual(batches, [250], 'written at once, in one batch with everything that had arrived');
    await rec.close();
  });
});

describe('server TLS certificate', () => {
  test('ok/generate-then-reuse: ca.crt, server.crt, server.key (0600) with the SANs; the same files on the next start', async (t) => {
    const dir = await tempDir(t);
    const first = await resolveServerTls({ dataDir: dir, hostname: 'mqtt-host.example' });
    assert.equal(first.generated, true);
    assert.equal(first.caPath, path.join(dir, 'tls', 'ca.crt'));
    assert.equal(((await fs.stat(first.keyPath)).mode & 0o777).toString(8), '600');
    const cert = new X509Certificate(first.cert);
    assert.match(cert.subjectAltName ?? '', /DNS:localhost/);
    assert.match(cert.subjectAltName ?? '', /DNS:mqtt-host\.example/);
    assert.match(cert.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
    assert.equal(cert.verify(new X509Certificate(first.ca!).publicKey), true);
    const second = await resolveServerTls({ dataDir: dir, hostname: 'other' });
    assert.equal(second.cert, first.cert);
    assert.equal(second.key, first.key);
    assert.equal(second.generated, false);

    // A TLS client trusting ca.crt accepts the server as localhost and as 127.0.0.1.
    const server = tls.createServer({ cert: first.cert, key: first.key }, (s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => server.close());
    const port = (server.address() as AddressInfo).port;
    for (const servername of ['localhost', undefined]) {
      await new Promise<void>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port, ca: first.ca, ...(servername ? { servername } : {}) }, () => {
          s.end();
          resolve();
        });
        s.on('error', reject);
      });
    }
  });

  test('ok/concurrent-starts: two processes starting at once end up with one certificate', async (t) => {
    const dir = await tempDir(t);
    const [a, b] = await Promise.all([resolveServerTls({ dataDir: dir }), resolveServerTls({ dataDir: dir })]);
    assert.equal(a.cert, b.cert);
    assert.equal([a.generated, b.generated].filter(Boolean).length, 1);
    assert.deepEqual((await fs.readdir(dir)).sort(), ['tls']);
  });

  test('ok/incomplete: a directory missing its key is set aside and replaced', async (t) => {
    const dir = await tempDir(t);
    const first = await resolveServerTls({ dataDir: dir });
    await fs.rm(first.keyPath);
    const warnings: string[] = [];
    const second = await resolveServerTls({ dataDir: dir, warn: (m) => warnings.push(m) });
    assert.notEqual(second.cert, first.cert);
    assert.equal(warnings.length, 1);
    assert.equal((await fs.readdir(dir)).filter((f) => f.startsWith('tls.incomplete-')).length, 1);
  });

  test('ok/configured: MQTT_TLS_CERT/KEY are used as given; a key that does not match is refused', async (t) => {
    const dir = await tempDir(t);
    const made = await resolveServerTls({ dataDir: path.join(dir, 'a') });
    const other = await resolveServerTls({ dataDir: path.join(dir, 'b') });
    const configured = await resolveServerTls({ dataDir: dir, certPath: made.certPath, keyPath: made.keyPath });
    assert.equal(configured.cert, made.cert);
    assert.equal(configured.caPath, undefined);
    await assert.rejects(resolveServerTls({ dataDir: dir, certPath: made.certPath, keyPath: other.keyPath }), /is not the key/);
  });
});

describe('remote verifier', () => {
  const allow: Decision = {
    result: 'allow',
    is_superuser: false,
    tenantId: 'acme',
    device: { id: 'd1', name: 'dev1', autoRegistered: false },
    matchedBy: 'TRUSTED_CERTIFICATE',
    trustedCertificateFingerprint: 'ab'.repeat(20),
    acl: [{ permission: 'allow', action: 'publish', topic: 'devices/dev1/#' }],
    client_attrs: { tenant_id: 'acme', device_id: 'd1', device_name: 'dev1' },
    cacheTtlSeconds: 60,
    expire_at: 2_000_000_000,
  };

  async function fakeApi(t: TestContext, respond: (body: unknown, auth: string | undefined) => { status: number; body?: unknown; delayMs?: number }) {
    const seen: Array<{ url: string | undefined; auth: string | undefined; body: unknown; socket: unknown }> = [];
    const server = http.createServer((req, res) => {
      let raw = '';
      req.on('data', (d) => (raw += d));
      req.on('end', () => {
        const body = JSON.parse(raw);
        seen.push({ url: req.url, auth: req.headers.authorization, body, socket: req.socket });
        const r = respond(body, req.headers.authorization);
        setTimeout(() => {
          res.writeHead(r.status, { 'content-type': 'application/json' });
          res.end(r.body === undefined ? '' : JSON.stringify(r.body));
        }, r.delayMs ?? 0);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => {
      server.closeAllConnections();
      server.close();
    });
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, seen };
  }

  const request = { clientId: 'dev1', certificateChain: ['MIIB'], sni: 'acme.example' };

  test('ok/allow-and-deny: 200 bodies come back as decisions; bearer token sent; connection kept alive', async (t) => {
    let answer: Decision = allow;
    const api = await fakeApi(t, () => ({ status: 200, body: answer }));
    const v = createRemoteVerifier({ url: api.url, token: 'secret-token-0123456789' });
    assert.deepEqual(await v.authenticate(request), allow);
    answer = { result: 'deny', reason: 'DEVICE_NOT_FOUND', message: 'no such device' };
    assert.deepEqual(await v.authenticate(request), answer);
    assert.equal(api.seen[0]!.url, '/verifier/v1/authenticate');
    assert.equal(api.seen[0]!.auth, 'Bearer secret-token-0123456789');
    assert.deepEqual(api.seen[0]!.body, request);
    for (let i = 0; i < 4; i++) await v.authenticate(request);
    assert.ok(new Set(api.seen.map((r) => r.socket)).size < api.seen.length, 'connections are reused');
  });

  test('ok/400: a chain the verifier cannot read is a MALFORMED_CERTIFICATE deny', async (t) => {
    const api = await fakeApi(t, () => ({ status: 400, body: { error: 'verifier/BadRequest', message: 'certificateChain[0] is not a certificate' } }));
    const v = createRemoteVerifier({ url: api.url.replace(/\/$/, ''), token: 't' });
    assert.deepEqual(await v.authenticate(request), {
      result: 'deny',
      reason: 'MALFORMED_CERTIFICATE',
      message: 'certificateChain[0] is not a certificate',
    });
  });

  for (const [name, status, body] of [
    ['401', 401, { error: 'auth/Unauthorized' }],
    ['404', 404, undefined],
    ['503', 503, { error: 'db/Unavailable' }],
    ['500', 500, undefined],
    ['bad-200', 200, { result: 'allow' }],
  ] as const) {
    test(`fail/${name}: fails closed with VerifierUnavailableError`, async (t) => {
      const api = await fakeApi(t, () => ({ status, body }));
      const v = createRemoteVerifier({ url: api.url, token: 't' });
      await assert.rejects(v.authenticate(request), VerifierUnavailableError);
    });
  }

  test('fail/timeout-and-unreachable: fail closed', async (t) => {
    const api = await fakeApi(t, () => ({ status: 200, body: allow, delayMs: 500 }));
    await assert.rejects(createRemoteVerifier({ url: api.url, token: 't', timeoutMs: 100 }).authenticate(request), /no answer within 100 ms/);
    await assert.rejects(createRemoteVerifier({ url: 'http://127.0.0.1:1', token: 't' }).authenticate(request), VerifierUnavailableError);
  });
});
