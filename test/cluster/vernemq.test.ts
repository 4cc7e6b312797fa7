/**
 * certgate answering VerneMQ's webhooks. Requests are built as vmq_webhooks sends them
 * (github.com/vernemq/vernemq, apps/vmq_webhooks/src/vmq_webhooks_plugin.erl: call_endpoint sets
 * `content-type: application/json` and `vernemq-hook: <hook>`; encode_payload renames addr/port to
 * peer_addr/peer_port and base64-encodes `client_cert`, which apps/vmq_server/src/vmq_ranch.erl
 * forwards from ssl:peercert when `listener.ssl.forward_connection_opts` is on; nullify sends an
 * absent username or password as null; subscribe topics go as [{topic, qos}]), and answers are
 * read as handle_response/normalize_modifiers read them, with the modifiers
 * apps/vmq_plugin/src/vmq_plugin_util.erl accepts. `certgate vernemq sync` is checked against a
 * stand-in of VerneMQ's HTTP API.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { basic, build, VERIFIER_TOKEN, type TestApp } from '../helpers/app.js';
import { createCa, createDevice, type Credentials } from '../../src/certs/certs-service.js';
import { createChangeFeed } from '../../src/db/change-feed.js';
import { createBrokerSync } from '../../src/cluster/broker-sync.js';
import { createSyncRepository } from '../../src/cluster/cluster-repository.js';
import { createVernemqApi } from '../../src/cluster/vernemq-api.js';
import { api, device, eventually, profile, tenant, trust, updateDevice } from '../verifier/fixtures.js';

/** The token travels as the password of the endpoint URL (`http://vernemq:TOKEN@certgate:8080/...`). */
const AUTH = basic('vernemq', VERIFIER_TOKEN);

async function hook(s: TestApp, name: string, body: unknown, auth = AUTH) {
  const res = await s.app.inject({
    method: 'POST',
    url: '/verifier/v1/vernemq',
    headers: { 'content-type': 'application/json', 'vernemq-hook': name, ...(auth ? { authorization: auth } : {}) },
    payload: JSON.stringify(body),
  });
  return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : undefined, cacheControl: res.headers['cache-control'] };
}

/** auth_on_register's body with forward_connection_opts on (auth_on_register/6 + connection_args). */
function registerBody(clientId: string, leaf: Credentials | undefined, username: string | null = null) {
  return {
    peer_addr: '10.0.0.7',
    peer_port: 51234,
    mountpoint: '',
    client_id: clientId,
    username,
    password: null,
    clean_session: true,
    ...(leaf ? { client_cert: Buffer.from(leaf.certDer).toString('base64') } : {}),
    listener_addr: '0.0.0.0',
    listener_port: 8883,
    listener_type: 'ssl',
  };
}

/**
 * What vmq_webhooks makes of an auth_on_register(_m5) answer: `ok` with modifiers, where a
 * `mountpoint` is taken only together with `client_id` (convert_subscriber_id, then
 * vmq_plugin_util:check_modifiers; any other key must be one of modifiers(auth_on_register)).
 */
function readRegister(body: any): { ok: true; subscriberId?: [string, string]; username?: string } | { ok: false; error: unknown } {
  if (body.result === 'ok') {
    const mods = body.modifiers ?? {};
    const allowed = new Set(['allow_register', 'allow_publish', 'allow_subscribe', 'allow_unsubscribe', 'max_message_size', 'max_connection_lifetime', 'subscriber_id', 'username', 'clean_session', 'max_message_rate', 'max_inflight_messages', 'shared_subscription_policy', 'retry_interval', 'upgrade_qos', 'max_online_messages', 'max_offline_messages', 'queue_type', 'max_drain_time', 'max_msgs_per_drain_step']);
    const rest = { ...mods };
    let subscriberId: [string, string] | undefined;
    if (typeof mods.client_id === 'string' && typeof mods.mountpoint === 'string') {
      subscriberId = [mods.mountpoint, mods.client_id];
      delete rest.client_id;
      delete rest.mountpoint;
    }
    for (const k of Object.keys(rest)) if (!allowed.has(k)) return { ok: false, error: `modifier ${k} not allowed` };
    return { ok: true, ...(subscriberId ? { subscriberId } : {}), ...(typeof mods.username === 'string' ? { username: mods.username } : {}) };
  }
  if (body.result === 'next') return { ok: false, error: 'next' };
  return { ok: false, error: body.result?.error ?? 'unknown_error' };
}

async function setup(t: import('node:test').TestContext) {
  const s = await build(t, { changeFeed: true });
  const acme = await tenant(s, 'acme');
  const p = await profile(s, acme, {
    clientIdPolicy: 'MUST_MATCH_DEVICE_NAME',
    acl: { publish: ['devices/{deviceName}/up'], subscribe: ['devices/{deviceName}/down/#'] },
  });
  const ca = await createCa({ cn: 'acme Root CA' });
  await trust(s, acme, ca.certPem, { deviceProfileId: p });
  return { s, acme, ca };
}

test('ok/vernemq-register: client_cert decides; the tenant becomes the mountpoint, the device id the username', async (t) => {
  const { s, ca } = await setup(t);
  const leaf = await createDevice({ issuer: ca, cn: 'dev1' });
  for (const name of ['auth_on_register', 'auth_on_register_m5']) {
    const body = name === 'auth_on_register' ? registerBody('dev1', leaf) : { ...registerBody('dev1', leaf), clean_start: true, properties: {} };
    const r = await hook(s, name, body);
    assert.equal(r.status, 200);
    assert.equal(r.cacheControl, undefined, 'no max-age: VerneMQ would keep the answer');
    const read = readRegister(r.body);
    assert.equal(read.ok, true, `${name}: ${JSON.stringify(r.body)}`);
    if (!read.ok) return;
    assert.deepEqual(read.subscriberId, ['acme', 'dev1']);
    assert.match(read.username!, /^[0-9a-f-]{36}$/);
    // Seconds (vmq_mqtt_fsm: set_maxlifetime_timer(S) arms erlang:send_after(S * 1000)), at most 2^32 - 1 ms.
    const lifetime = r.body.modifiers.max_connection_lifetime;
    assert.ok(Number.isInteger(lifetime) && lifetime > 0 && lifetime * 1000 <= 2 ** 32 - 1, String(lifetime));
  }

  // A leaf that expires in an hour: the session ends with it.
  const shortLived = await createDevice({ issuer: ca, cn: 'dev1', notAfter: new Date(Date.now() + 3_600_000) });
  const short = (await hook(s, 'auth_on_register', registerBody('dev1', shortLived))).body.modifiers.max_connection_lifetime;
  assert.ok(short <= 3600 && short > 3000, String(short));

  // Denied: another CA, a wrong client id, no certificate forwarded.
  const rogue = await createDevice({ issuer: await createCa(), cn: 'dev1' });
  assert.deepEqual(readRegister((await hook(s, 'auth_on_register', registerBody('dev1', rogue))).body), { ok: false, error: 'not_allowed' });
  assert.deepEqual(readRegister((await hook(s, 'auth_on_register', registerBody('other', leaf))).body), { ok: false, error: 'not_allowed' });
  const none = readRegister((await hook(s, 'auth_on_register', registerBody('dev1', undefined))).body);
  assert.equal(none.ok, false);
  assert.match(String((none as { error: unknown }).error), /forward_connection_opts/);
});

test('ok/vernemq-publish-subscribe: decided from the device ACL now; refused topics get qos 128', async (t) => {
  const { s, acme, ca } = await setup(t);
  const leaf = await createDevice({ issuer: ca, cn: 'dev1' });
  const reg = readRegister((await hook(s, 'auth_on_register', registerBody('dev1', leaf))).body);
  assert.equal(reg.ok, true);
  const deviceId = (reg as { username: string }).username;
  const session = { username: deviceId, mountpoint: 'acme', client_id: 'dev1' };
  const publish = (topic: string, name = 'auth_on_publish') =>
    hook(s, name, { ...session, qos: 1, topic, payload: Buffer.from('hi').toString('base64'), retain: false });

  assert.deepEqual((await publish('devices/dev1/up')).body, { result: 'ok' });
  assert.deepEqual((await publish('devices/dev1/up', 'auth_on_publish_m5')).body, { result: 'ok' });
  assert.deepEqual((await publish('devices/dev2/up')).body, { result: { error: 'not_allowed' } });
  // Another tenant's mountpoint with this device id: refused.
  assert.deepEqual((await hook(s, 'auth_on_publish', { ...session, mountpoint: 'beta', qos: 0, topic: 'devices/dev1/up', payload: '', retain: false })).body, {
    result: { error: 'not_allowed' },
  });

  const sub = await hook(s, 'auth_on_subscribe', { ...session, topics: [{ topic: 'devices/dev1/down/#', qos: 1 }, { topic: '#', qos: 0 }] });
  assert.deepEqual(sub.body, { result: 'ok', topics: [{ topic: 'devices/dev1/down/#', qos: 1 }, { topic: '#', qos: 128 }] });
  const all = await hook(s, 'auth_on_subscribe', { ...session, topics: [{ topic: 'devices/dev1/down/a', qos: 2 }] });
  assert.deepEqual(all.body, { result: 'ok' });
  // MQTT 5: the answer's topics are modifiers; allowed ones keep the options the client asked for.
  const m5 = await hook(s, 'auth_on_subscribe_m5', {
    ...session,
    topics: [
      { topic: 'devices/dev1/down/+', qos: 1, no_local: true, rap: false, retain_handling: 'send_if_new_sub' },
      { topic: 'devices/+/down/#', qos: 1, no_local: false, rap: false, retain_handling: 'send_retain' },
    ],
    properties: {},
  });
  assert.deepEqual(m5.body, {
    result: 'ok',
    modifiers: {
      topics: [
        { topic: 'devices/dev1/down/+', qos: 1, no_local: true, rap: false, retain_handling: 'send_if_new_sub' },
        { topic: 'devices/+/down/#', qos: 128 },
      ],
    },
  });

  // A disabled device: the next publish is refused.
  await updateDevice(s, acme, deviceId, { status: 'DISABLED' });
  assert.deepEqual((await publish('devices/dev1/up')).body, { result: { error: 'not_allowed' } });
});

test('ok/vernemq-deny: the profile\'s deny rules refuse publishes and the subscriptions they cover; a wider subscription stays granted', async (t) => {
  const { s, acme, ca } = await setup(t);
  const p = await profile(s, acme, {
    clientIdPolicy: 'MUST_MATCH_DEVICE_NAME',
    acl: { publish: ['#'], subscribe: ['#'], deny: { publish: ['devices/{deviceName}/config'], subscribe: ['test/nosubscribe'] } },
  });
  const leaf = await createDevice({ issuer: ca, cn: 'dev2' });
  await device(s, acme, { name: 'dev2', deviceProfileId: p });
  const reg = readRegister((await hook(s, 'auth_on_register', registerBody('dev2', leaf))).body);
  assert.equal(reg.ok, true);
  const session = { username: (reg as { username: string }).username, mountpoint: 'acme', client_id: 'dev2' };
  const publish = (topic: string, name = 'auth_on_publish') =>
    hook(s, name, { ...session, qos: 1, topic, payload: Buffer.from('hi').toString('base64'), retain: false });

  assert.deepEqual((await publish('devices/dev2/config')).body, { result: { error: 'not_allowed' } });
  assert.deepEqual((await publish('devices/dev2/config', 'auth_on_publish_m5')).body, { result: { error: 'not_allowed' } });
  assert.deepEqual((await publish('devices/dev2/up')).body, { result: 'ok' });
  const sub = await hook(s, 'auth_on_subscribe', {
    ...session,
    topics: [{ topic: 'test/nosubscribe', qos: 1 }, { topic: '#', qos: 1 }, { topic: 'test/+', qos: 0 }],
  });
  assert.deepEqual(sub.body, { result: 'ok', topics: [{ topic: 'test/nosubscribe', qos: 128 }, { topic: '#', qos: 1 }, { topic: 'test/+', qos: 0 }] });
  const m5 = await hook(s, 'auth_on_subscribe_m5', {
    ...session,
    topics: [{ topic: 'test/nosubscribe', qos: 2, no_local: false, rap: false, retain_handling: 'send_retain' }],
    properties: {},
  });
  assert.deepEqual(m5.body, { result: 'ok', modifiers: { topics: [{ topic: 'test/nosubscribe', qos: 128 }] } });
});

test('fail/vernemq-requests: no token 401, an unknown hook or a malformed body 400 with the error shape', async (t) => {
  const { s } = await setup(t);
  assert.equal((await hook(s, 'auth_on_publish', { client_id: 'x', topic: 'a' }, '')).status, 401);
  assert.equal((await hook(s, 'auth_on_publish', { client_id: 'x', topic: 'a' }, basic('vernemq', 'wrong'))).status, 401);
  const unknown = await hook(s, 'on_deliver', {});
  assert.equal(unknown.status, 400);
  const bad = await hook(s, 'auth_on_subscribe', { client_id: 'x', topics: 'a' });
  assert.equal(bad.status, 400);
  assert.match(bad.body.message, /auth_on_subscribe/);
  assert.equal((await api(s, 'POST', '/verifier/v1/vernemq', AUTH, {})).status, 400, 'no vernemq-hook header');
});

test('ok/vernemq-sync: a disabled device\'s session is disconnected through VerneMQ\'s HTTP API; the CA bundle is written', async (t) => {
  const { s, acme, ca } = await setup(t);
  // A stand-in of apps/vmq_server/src/vmq_http_mgmt_api.erl: GET /api/v1/<command>, API key as the
  // Basic user, `session show` written by vmq_cli_json_writer as {"type": "table", "table": [...]}.
  const calls: Array<{ path: string; query: URLSearchParams; authorization?: string }> = [];
  const sessions = new Map<string, { client_id: string; mountpoint: string; user: string }>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://vernemq');
    calls.push({ path: url.pathname, query: url.searchParams, authorization: req.headers.authorization });
    if (req.method === 'GET' && url.pathname === '/api/v1/session/show') {
      return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ type: 'table', table: [...sessions.values()] }));
    }
    if (req.method === 'GET' && url.pathname === '/api/v1/session/disconnect') {
      sessions.delete(`${url.searchParams.get('--mountpoint')}/${url.searchParams.get('client-id')}`);
      return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ type: 'text', text: 'Done' }));
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-vernemq-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  const caFile = path.join(dir, 'certgate-ca-bundle.pem');

  for (const cn of ['dev1', 'dev2']) {
    const leaf = await createDevice({ issuer: ca, cn });
    const reg = readRegister((await hook(s, 'auth_on_register', registerBody(cn, leaf))).body) as { ok: true; subscriberId: [string, string]; username: string };
    sessions.set(`${reg.subscriberId[0]}/${cn}`, { client_id: cn, mountpoint: reg.subscriberId[0], user: reg.username });
  }
  const feed = await createChangeFeed(s.databaseUrl);
  const sync = createBrokerSync({
    feed,
    broker: createVernemqApi({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: 'vmq-api-key', caFile }),
    repository: createSyncRepository(s.prisma),
    batchMs: 50,
  });
  t.after(async () => {
    await sync.close();
    await feed.close();
  });
  await sync.start();
  assert.equal((await fs.readFile(caFile, 'utf8')).replace(/\s+/g, ''), ca.certPem.replace(/\s+/g, ''));

  const dev1 = [...sessions.values()].find((x) => x.client_id === 'dev1')!.user;
  await updateDevice(s, acme, dev1, { status: 'DISABLED' });
  await eventually(async () => calls.some((c) => c.path === '/api/v1/session/disconnect'), 15_000, 'disconnect call');
  const disconnect = calls.find((c) => c.path === '/api/v1/session/disconnect')!;
  assert.equal(disconnect.query.get('client-id'), 'dev1');
  assert.equal(disconnect.query.get('--mountpoint'), 'acme');
  assert.equal(disconnect.authorization, `Basic ${Buffer.from('vmq-api-key:').toString('base64')}`);
  const show = calls.find((c) => c.path === '/api/v1/session/show')!;
  assert.deepEqual([...show.query.keys()].sort(), ['--client_id', '--limit', '--mountpoint', '--user']);
  assert.deepEqual([...sessions.keys()], ['acme/dev2']);
});
