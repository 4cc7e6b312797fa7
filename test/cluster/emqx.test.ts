/**
 * certgate as the trust backend of an EMQX 5.8 cluster: requests rendered the way EMQX renders
 * its templates and answers read the way EMQX reads them (test/helpers/emqx.ts, after
 * emqx/emqx v5.8.9: apps/emqx_auth/src/emqx_auth_utils.erl, apps/emqx_auth_http/src/emqx_authn_http.erl,
 * apps/emqx_auth/src/emqx_authn/emqx_authn_utils.erl, apps/emqx_auth/src/emqx_authz/emqx_authz_rule_raw.erl,
 * apps/emqx_auth/src/emqx_authz/sources/emqx_authz_client_info.erl, apps/emqx_auth_http/src/emqx_authz_http.erl).
 * The templates are those of deploy/emqx/base.hocon.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { test } from 'node:test';
import { basic, build, VERIFIER_TOKEN, type TestApp } from '../helpers/app.js';
import {
  emqxAclCheck,
  readAuthnResponse,
  readAuthzResponse,
  renderTemplate,
  type EmqxClientVars,
} from '../helpers/emqx.js';
import { createCa, createDevice, createIntermediate, type Credentials } from '../../src/certs/certs-service.js';
import { api, device, profile, tenant, trust, updateDefaultProfile, updateDevice, type Tenant } from '../verifier/fixtures.js';

/** The authenticator's `body` in deploy/emqx/base.hocon. */
const AUTHN_BODY = {
  clientId: '${client_attrs.cid}',
  certificateChain: '${cert_pem}',
  username: '${username}',
  tenantId: '${client_attrs.tns}',
  peerhost: '${peerhost}',
};

/** The authorizer's `body` in deploy/emqx/base.hocon. */
const AUTHZ_BODY = {
  clientid: '${clientid}',
  topic: '${topic}',
  action: '${action}',
  tenant_id: '${client_attrs.tenant_id}',
  device_id: '${client_attrs.device_id}',
};

/**
 * What EMQX sets before authentication with deploy/emqx/base.hocon's `mqtt.client_attrs_init`
 * (apps/emqx/src/emqx_channel.erl, maybe_set_client_initial_attrs): the original client id as
 * `cid` and the username as `tns`, then `mqtt.clientid_override` makes the client id `<tns>:<cid>`.
 */
function connectVars(opts: { clientid: string; username?: string; leaf?: Credentials }): EmqxClientVars {
  const attrs: Record<string, string> = { cid: opts.clientid };
  if (opts.username) attrs.tns = opts.username;
  return {
    clientid: opts.username ? `${opts.username}:${opts.clientid}` : opts.clientid,
    username: opts.username,
    peerhost: '10.0.0.7',
    certDer: opts.leaf?.certDer,
    client_attrs: attrs,
  };
}

async function emqxAuthenticate(s: TestApp, vars: EmqxClientVars, query = '') {
  const res = await s.app.inject({
    method: 'POST',
    url: `/verifier/v1/authenticate${query}`,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${VERIFIER_TOKEN}` },
    payload: JSON.stringify(renderTemplate(AUTHN_BODY, vars)),
  });
  return { res, body: res.statusCode === 200 ? JSON.parse(res.body) : undefined, emqx: readAuthnResponse(res.statusCode, res.headers['content-type'] as string, res.body) };
}

async function emqxAuthorize(s: TestApp, vars: EmqxClientVars, auth = `Bearer ${VERIFIER_TOKEN}`) {
  const res = await s.app.inject({
    method: 'POST',
    url: '/verifier/v1/authorize',
    headers: { 'content-type': 'application/json', authorization: auth },
    payload: JSON.stringify(renderTemplate(AUTHZ_BODY, vars)),
  });
  return { status: res.statusCode, result: readAuthzResponse(res.statusCode, res.headers['content-type'] as string, res.body) };
}

async function acmeWithCa(s: TestApp, id = 'acme'): Promise<{ t: Tenant; ca: Credentials }> {
  const t = await tenant(s, id);
  await updateDefaultProfile(s, t, { clientIdPolicy: 'MUST_MATCH_DEVICE_NAME' });
  const ca = await createCa({ cn: `${id} Root CA` });
  await trust(s, t, ca.certPem);
  return { t, ca };
}

test('ok/emqx-leaf-alone: ${cert_pem} (base64 DER on one line) authenticates; EMQX reads every field without failure', async (t) => {
  const s = await build(t);
  const { ca } = await acmeWithCa(s);
  const leaf = await createDevice({ issuer: ca, cn: 'dev1' });
  const vars = connectVars({ clientid: 'dev1', username: 'acme', leaf });
  const rendered = renderTemplate(AUTHN_BODY, vars);
  assert.doesNotMatch(rendered.certificateChain!, /BEGIN|\n/, 'EMQX sends the DER as base64, no armour');

  const { body, emqx } = await emqxAuthenticate(s, vars);
  assert.equal(body.result, 'allow', JSON.stringify(body));
  assert.equal(emqx.outcome, 'ok', JSON.stringify(emqx));
  if (emqx.outcome !== 'ok') return;
  assert.equal(emqx.is_superuser, false);
  assert.deepEqual(emqx.client_attrs, { tenant_id: 'acme', device_id: body.device.id, device_name: 'dev1' });
  // expire_at: Unix seconds, never after the leaf's notAfter, in the future.
  assert.ok(body.expire_at <= Math.floor(leaf.notAfter.getTime() / 1000));
  assert.ok(body.expire_at > Date.now() / 1000);
  assert.equal(emqx.expireAtMs, body.expire_at * 1000);
  assert.deepEqual(body.acl.at(-1), { permission: 'deny', action: 'all', topic: '#' });
  // The ACL as EMQX applies it: the device's own topics allowed, everything else denied, nothing passed on.
  assert.equal(emqxAclCheck(emqx.acl!, 'publish', 'devices/dev1/telemetry'), 'allow');
  assert.equal(emqxAclCheck(emqx.acl!, 'subscribe', 'devices/dev1/#'), 'allow');
  assert.equal(emqxAclCheck(emqx.acl!, 'publish', 'devices/dev2/telemetry'), 'deny');
  assert.equal(emqxAclCheck(emqx.acl!, 'subscribe', '#'), 'deny');
  // Without the final rule EMQX would pass the topic on to authorization.no_match (allow by default).
  assert.equal(emqxAclCheck(emqx.acl!.slice(0, -1), 'publish', 'devices/dev2/telemetry'), 'nomatch');
});

test('ok/emqx-client-attrs-always-strings: a device with no name field still gives strings; keys pass is_restricted_str', async (t) => {
  const s = await build(t);
  const { t: acme, ca } = await acmeWithCa(s);
  await updateDefaultProfile(s, acme, { clientIdPolicy: 'ANY' });
  const leaf = await createDevice({ issuer: ca, cn: 'sensor_7' });
  const { body, emqx } = await emqxAuthenticate(s, connectVars({ clientid: 'anything', username: 'acme', leaf }));
  assert.equal(emqx.outcome, 'ok', JSON.stringify(emqx));
  for (const [k, v] of Object.entries(body.client_attrs)) {
    assert.match(k, /^[A-Za-z0-9]+[A-Za-z0-9-_]*$/);
    assert.equal(typeof v, 'string');
  }
  // A null would have made EMQX fail the authentication (iolist_to_binary(null)).
  assert.equal(readAuthnResponse(200, 'application/json', JSON.stringify({ ...body, client_attrs: { ...body.client_attrs, device_name: null } })).outcome, 'crash');
});

test('ok/emqx-issuing-intermediate-is-the-anchor: with the leaf alone, the uploaded intermediate anchors the path', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  await updateDefaultProfile(s, acme, { clientIdPolicy: 'ANY' });
  const root = await createCa({ cn: 'acme Root' });
  const issuing = await createIntermediate({ issuer: root, cn: 'acme Issuing CA' });
  const leaf = await createDevice({ issuer: issuing, cn: 'dev1' });

  // Only the root trusted: the leaf alone has no path (its issuer was not presented), the chain has.
  await trust(s, acme, root.certPem);
  let r = await emqxAuthenticate(s, connectVars({ clientid: 'dev1', username: 'acme', leaf }));
  assert.deepEqual([r.body.result, r.body.reason], ['deny', 'NO_TRUSTED_ANCHOR'], JSON.stringify(r.body));
  const chain = await api(s, 'POST', '/verifier/v1/authenticate', `Bearer ${VERIFIER_TOKEN}`, {
    clientId: 'dev1',
    certificateChain: leaf.certPem + issuing.certPem,
  });
  assert.equal(chain.body.result, 'allow', 'a PEM bundle in one string is the chain, leaf first');

  // The issuing CA uploaded: the leaf alone is enough.
  const fp = await trust(s, acme, issuing.certPem);
  r = await emqxAuthenticate(s, connectVars({ clientid: 'dev1', username: 'acme', leaf }));
  assert.equal(r.body.result, 'allow', JSON.stringify(r.body));
  assert.equal(r.body.trustedCertificateFingerprint, fp);
});

test('ok/certificate-chain-shapes: an array, a PEM bundle, one PEM, one base64 DER line; errors say what the field holds', async (t) => {
  const s = await build(t);
  const { ca } = await acmeWithCa(s);
  const leaf = await createDevice({ issuer: ca, cn: 'dev1' });
  const b64 = Buffer.from(leaf.certDer).toString('base64');
  for (const certificateChain of [[leaf.certPem], leaf.certPem, `${leaf.certPem}${ca.certPem}`, b64, ` ${b64}\n`]) {
    const r = await api(s, 'POST', '/verifier/v1/authenticate', `Bearer ${VERIFIER_TOKEN}`, { clientId: 'dev1', certificateChain });
    assert.equal(r.body.result, 'allow', `${JSON.stringify(certificateChain).slice(0, 40)}: ${r.text}`);
  }
  // The token as the password of HTTP Basic authenticates too.
  const viaBasic = await api(s, 'POST', '/verifier/v1/authenticate', basic('emqx', VERIFIER_TOKEN), { clientId: 'dev1', certificateChain: b64 });
  assert.equal(viaBasic.body.result, 'allow', viaBasic.text);
  assert.equal((await api(s, 'POST', '/verifier/v1/authenticate', basic('emqx', 'wrong-token'), { clientId: 'dev1', certificateChain: b64 })).status, 401);
  // No certificate: EMQX renders an absent ${cert_pem} as "".
  const none = await api(s, 'POST', '/verifier/v1/authenticate', `Bearer ${VERIFIER_TOKEN}`, { clientId: 'dev1', certificateChain: '' });
  assert.deepEqual([none.status, none.body.result, none.body.reason], [200, 'deny', 'MALFORMED_CERTIFICATE']);

  for (const [name, certificateChain, expected] of [
    ['fail/number', 42, /certificateChain must be an array of certificates \(PEM or base64 DER, leaf first\), or one string/],
    ['fail/empty-array', [], /certificateChain lists no certificate/],
    ['fail/entry-not-string', [7], /certificateChain must be an array of certificates \(PEM or base64 DER, leaf first\), or one string/],
    ['fail/entry-empty', [''], /a certificate of certificateChain is empty/],
    ['fail/entry-too-long', ['A'.repeat(64 * 1024 + 1)], /longer than 65536 characters of PEM or base64 DER/],
  ] as const) {
    const r = await api(s, 'POST', '/verifier/v1/authenticate', `Bearer ${VERIFIER_TOKEN}`, { clientId: 'dev1', certificateChain });
    assert.equal(r.status, 400, name);
    assert.match(r.body.message, expected, `${name}: ${r.body.message}`);
    assert.doesNotMatch(r.body.message, /Too big: expected string to have <=64 characters/);
  }
});

test('ok/emqx-tenants-apart: two tenants with dev1 get different client ids; a device cannot claim the other tenant', async (t) => {
  const s = await build(t);
  const { ca: acmeCa } = await acmeWithCa(s, 'acme');
  const { ca: betaCa } = await acmeWithCa(s, 'beta');
  const acmeLeaf = await createDevice({ issuer: acmeCa, cn: 'dev1' });
  const betaLeaf = await createDevice({ issuer: betaCa, cn: 'dev1' });

  const a = await emqxAuthenticate(s, connectVars({ clientid: 'dev1', username: 'acme', leaf: acmeLeaf }));
  const b = await emqxAuthenticate(s, connectVars({ clientid: 'dev1', username: 'beta', leaf: betaLeaf }));
  assert.equal(a.body.result, 'allow');
  assert.equal(b.body.result, 'allow');
  assert.notEqual(a.body.client_attrs.device_id, b.body.client_attrs.device_id);
  // The listener's mountpoint "${client_attrs.tenant_id}/" puts their topics under acme/ and beta/.
  assert.deepEqual([a.body.client_attrs.tenant_id, b.body.client_attrs.tenant_id], ['acme', 'beta']);
  // mqtt.clientid_override made the session ids acme:dev1 and beta:dev1: no takeover between them.
  assert.notEqual(connectVars({ clientid: 'dev1', username: 'acme' }).clientid, connectVars({ clientid: 'dev1', username: 'beta' }).clientid);

  // beta's device naming acme (to take over acme:dev1) is refused, and so is a device naming no tenant.
  const claim = await emqxAuthenticate(s, connectVars({ clientid: 'dev1', username: 'acme', leaf: betaLeaf }));
  assert.deepEqual([claim.body.result, claim.body.reason], ['deny', 'NO_TRUSTED_ANCHOR']);
  assert.deepEqual(claim.emqx, { outcome: 'error', reason: 'not_authorized' });
  const none = await emqxAuthenticate(s, connectVars({ clientid: 'dev1', leaf: acmeLeaf }));
  assert.equal(none.body.result, 'deny');
});

test('ok/emqx-authorizer: decided from the device as it is now, on every publish and subscribe', async (t) => {
  const s = await build(t);
  const { t: acme, ca } = await acmeWithCa(s);
  const p = await profile(s, acme, {
    clientIdPolicy: 'MUST_MATCH_DEVICE_NAME',
    acl: { publish: ['devices/{deviceName}/up'], subscribe: ['devices/{deviceName}/down/#'] },
  });
  const leaf = await createDevice({ issuer: ca, cn: 'dev1' });
  const id = await device(s, acme, { name: 'dev1', deviceProfileId: p });
  const auth = await emqxAuthenticate(s, connectVars({ clientid: 'dev1', username: 'acme', leaf }), '?acl=omit');
  assert.equal(auth.body.result, 'allow');
  assert.equal('acl' in auth.body, false, '?acl=omit leaves the decision to the authorizer');
  assert.equal(auth.emqx.outcome, 'ok');
  const client = { ...connectVars({ clientid: 'dev1', username: 'acme', leaf }), client_attrs: auth.body.client_attrs };
  const ask = (action: 'publish' | 'subscribe', topic: string) => emqxAuthorize(s, { ...client, action, topic });

  const cases: Array<[string, 'publish' | 'subscribe', string, 'allow' | 'deny']> = [
    ['ok/publish-own-topic', 'publish', 'devices/dev1/up', 'allow'],
    ['fail/publish-other-topic', 'publish', 'devices/dev2/up', 'deny'],
    ['fail/publish-wildcard', 'publish', 'devices/dev1/+', 'deny'],
    ['ok/subscribe-covered', 'subscribe', 'devices/dev1/down/+/x', 'allow'],
    ['ok/subscribe-same-filter', 'subscribe', 'devices/dev1/down/#', 'allow'],
    ['ok/subscribe-shared', 'subscribe', '$share/g/devices/dev1/down/a', 'allow'],
    ['fail/subscribe-wider', 'subscribe', 'devices/dev1/#', 'deny'],
    ['fail/subscribe-everything', 'subscribe', '#', 'deny'],
    ['fail/subscribe-plus-level', 'subscribe', 'devices/+/down/#', 'deny'],
  ];
  for (const [name, action, topic, expected] of cases) assert.equal((await ask(action, topic)).result, expected, name);

  // An ACL change applies on the next publish.
  const change = await api(s, 'PUT', `/tenant/tenants/acme/device-profiles/${p}`, acme.auth, { acl: { publish: ['devices/{deviceName}/up', 'alerts/{deviceName}'] } });
  assert.equal(change.status, 200, change.text);
  assert.equal((await ask('publish', 'alerts/dev1')).result, 'allow');

  // A disabled device, a suspended tenant: denied on the next publish.
  await updateDevice(s, acme, id, { status: 'DISABLED' });
  assert.equal((await ask('publish', 'devices/dev1/up')).result, 'deny');
  await updateDevice(s, acme, id, { status: 'ACTIVE' });
  assert.equal((await ask('publish', 'devices/dev1/up')).result, 'allow');
  assert.equal((await api(s, 'PUT', '/tenant/tenants/acme', s.management, { status: 'SUSPENDED' })).status, 200);
  assert.equal((await ask('publish', 'devices/dev1/up')).result, 'deny');
});

test('ok/emqx-acl-deny: a profile\'s deny rules come before its allow rules in the ACL and refuse in the authorizer too', async (t) => {
  const s = await build(t);
  const { t: acme, ca } = await acmeWithCa(s);
  const p = await profile(s, acme, {
    clientIdPolicy: 'MUST_MATCH_DEVICE_NAME',
    acl: {
      publish: ['devices/{deviceName}/#'],
      subscribe: ['devices/{deviceName}/#', '#'],
      deny: { publish: ['devices/{deviceName}/config'], subscribe: ['test/nosubscribe', 'devices/{deviceName}/secret/+'] },
    },
  });
  const leaf = await createDevice({ issuer: ca, cn: 'dev1' });
  await device(s, acme, { name: 'dev1', deviceProfileId: p });
  const vars = connectVars({ clientid: 'dev1', username: 'acme', leaf });
  const auth = await emqxAuthenticate(s, vars);
  assert.equal(auth.body.result, 'allow', JSON.stringify(auth.body));
  // Deny rules first (EMQX stops at the first rule that matches), the final deny of everything last.
  assert.deepEqual(auth.body.acl, [
    { permission: 'deny', action: 'publish', topic: 'devices/dev1/config' },
    { permission: 'deny', action: 'subscribe', topic: 'test/nosubscribe' },
    { permission: 'deny', action: 'subscribe', topic: 'devices/dev1/secret/+' },
    { permission: 'allow', action: 'publish', topic: 'devices/dev1/#' },
    { permission: 'allow', action: 'subscribe', topic: 'devices/dev1/#' },
    { permission: 'allow', action: 'subscribe', topic: '#' },
    { permission: 'deny', action: 'all', topic: '#' },
  ]);
  assert.equal(auth.emqx.outcome, 'ok');
  if (auth.emqx.outcome !== 'ok') return;
  const client = { ...vars, client_attrs: auth.body.client_attrs };
  const cases: Array<[string, 'publish' | 'subscribe', string, 'allow' | 'deny']> = [
    ['fail/publish-denied', 'publish', 'devices/dev1/config', 'deny'],
    ['ok/publish-allowed', 'publish', 'devices/dev1/up', 'allow'],
    ['fail/subscribe-denied', 'subscribe', 'test/nosubscribe', 'deny'],
    ['fail/subscribe-covered-by-deny', 'subscribe', 'devices/dev1/secret/a', 'deny'],
    ['ok/subscribe-wider-than-deny', 'subscribe', '#', 'allow'],
    ['ok/subscribe-next-to-deny', 'subscribe', 'test/other', 'allow'],
  ];
  for (const [name, action, topic, expected] of cases) {
    // The ACL EMQX got with the authentication and the HTTP authorizer (`?acl=omit`) agree.
    assert.equal(emqxAclCheck(auth.emqx.acl!, action, topic), expected, `acl: ${name}`);
    assert.equal((await emqxAuthorize(s, { ...client, action, topic })).result, expected, `authorizer: ${name}`);
  }
  // The authorizer judges a shared subscription by its filter.
  assert.equal((await emqxAuthorize(s, { ...client, action: 'subscribe', topic: '$share/g/test/nosubscribe' })).result, 'deny');
  assert.equal((await emqxAuthorize(s, { ...client, action: 'subscribe', topic: '$share/g/test/other' })).result, 'allow');

  // Emptied deny lists: the same profile allows them again, on the next request.
  const cleared = await api(s, 'PUT', `/tenant/tenants/acme/device-profiles/${p}`, acme.auth, { acl: { deny: { publish: [], subscribe: [] } } });
  assert.equal(cleared.status, 200, cleared.text);
  assert.equal((await emqxAuthorize(s, { ...client, action: 'publish', topic: 'devices/dev1/config' })).result, 'allow');
  assert.equal((await emqxAuthorize(s, { ...client, action: 'subscribe', topic: 'test/nosubscribe' })).result, 'allow');
});

test('fail/emqx-authorizer-input: unknown devices, other tenants, missing attributes are denied; bad requests are 400, never allow', async (t) => {
  const s = await build(t);
  const { t: acme } = await acmeWithCa(s, 'acme');
  await acmeWithCa(s, 'beta');
  const id = await device(s, acme, { name: 'dev1' });
  const base = { clientid: 'dev1', action: 'publish' as const, topic: 'devices/dev1/x' };
  assert.equal((await emqxAuthorize(s, { ...base, client_attrs: { tenant_id: 'acme', device_id: id } })).result, 'allow');
  for (const [name, attrs] of [
    ['fail/other-tenant', { tenant_id: 'beta', device_id: id }],
    ['fail/unknown-device', { tenant_id: 'acme', device_id: '00000000-0000-4000-8000-000000000000' }],
    ['fail/not-a-uuid', { tenant_id: 'acme', device_id: 'dev1' }],
    ['fail/no-attributes', {}],
  ] as const) {
    const r = await emqxAuthorize(s, { ...base, client_attrs: attrs });
    assert.deepEqual(r, { status: 200, result: 'deny' }, name);
  }
  const bad = await api(s, 'POST', '/verifier/v1/authorize', `Bearer ${VERIFIER_TOKEN}`, { ...base, action: 'connect', tenant_id: 'acme', device_id: id });
  assert.equal(bad.status, 400);
  // The token as the password of HTTP Basic works too; no token, a wrong one: 401.
  assert.equal((await emqxAuthorize(s, { ...base, client_attrs: { tenant_id: 'acme', device_id: id } }, basic('emqx', VERIFIER_TOKEN))).result, 'allow');
  assert.equal((await emqxAuthorize(s, { ...base, client_attrs: { tenant_id: 'acme', device_id: id } }, basic('emqx', 'wrong'))).status, 401);
  assert.equal((await emqxAuthorize(s, { ...base, client_attrs: { tenant_id: 'acme', device_id: id } }, '')).status, 401);
});

test('ok/ca-bundle: every enabled trusted certificate of every tenant once, as PEM, with a strong ETag and 304', async (t) => {
  const s = await build(t);
  const { t: acme, ca: acmeCa } = await acmeWithCa(s, 'acme');
  const { t: beta, ca: betaCa } = await acmeWithCa(s, 'beta');
  await trust(s, beta, acmeCa.certPem); // trusted by two tenants: listed once
  const off = await createCa({ cn: 'disabled CA' });
  await trust(s, acme, off.certPem, { status: 'DISABLED' });

  const get = (headers: Record<string, string> = {}, auth = `Bearer ${VERIFIER_TOKEN}`) =>
    s.app.inject({ method: 'GET', url: '/verifier/v1/ca-bundle', headers: { authorization: auth, ...headers } });
  const first = await get();
  assert.equal(first.statusCode, 200);
  assert.equal(first.headers['content-type'], 'application/x-pem-file');
  const etag = first.headers.etag as string;
  assert.match(etag, /^"[0-9a-f]{64}"$/, 'strong ETag');
  const blocks = first.body.match(/-----BEGIN CERTIFICATE-----/g) ?? [];
  assert.equal(blocks.length, 2);
  const norm = (pem: string) => pem.replace(/\s+/g, '');
  assert.ok(norm(first.body).includes(norm(acmeCa.certPem)));
  assert.ok(norm(first.body).includes(norm(betaCa.certPem)));
  assert.ok(!norm(first.body).includes(norm(off.certPem)));

  const again = await get({ 'if-none-match': etag });
  assert.equal(again.statusCode, 304);
  assert.equal(again.body, '');
  assert.equal(again.headers.etag, etag);
  assert.equal((await get({ 'if-none-match': '"other"' })).statusCode, 200);
  assert.equal((await get({}, basic('emqx-sync', VERIFIER_TOKEN))).statusCode, 200, 'the token as HTTP Basic password');
  assert.equal((await get({}, '')).statusCode, 401);

  // A change of the set changes the ETag.
  const list = await api(s, 'GET', `/tenant/tenants/acme/trusted-certificates?pageSize=100`, acme.auth);
  const offFp = list.body.certificates.find((c: { name?: string; status: string }) => c.status === 'DISABLED').fingerprint;
  assert.equal((await api(s, 'PUT', `/tenant/tenants/acme/trusted-certificates/${offFp}`, acme.auth, { status: 'ENABLED' })).status, 200);
  const third = await get({ 'if-none-match': etag });
  assert.equal(third.statusCode, 200);
  assert.notEqual(third.headers.etag, etag);
  assert.equal((third.body.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length, 3);
});

test('ok/deploy-templates: deploy/emqx/base.hocon holds the request bodies these tests render', async () => {
  const conf = await fs.readFile(new URL('../../deploy/emqx/base.hocon', import.meta.url), 'utf8');
  for (const [k, v] of [...Object.entries(AUTHN_BODY), ...Object.entries(AUTHZ_BODY)]) {
    assert.ok(conf.includes(`${k} = "${v}"`), `base.hocon sets ${k} = "${v}"`);
  }
  for (const line of [
    'mountpoint = "${client_attrs.tenant_id}/"',
    'verify = verify_peer',
    'fail_if_no_peer_cert = true',
    'clientid_override = "concat([client_attrs.tns, \':\', clientid])"',
    'no_match = deny',
  ]) {
    assert.ok(conf.includes(line), `base.hocon has ${line}`);
  }
});
