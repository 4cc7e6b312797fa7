/**
 * End to end over a real listening socket with `fetch`: the seed flow of the Cumulocity guide
 * (create a tenant, upload a CA made with the openssl CLI exactly as the guide makes it, list it)
 * and the operational endpoints.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { build } from '../helpers/app.js';
import { guideCa, withoutNewlines } from '../helpers/openssl.js';

test('the seed flow and the operational endpoints over HTTP', async (t) => {
  const s = await build(t);
  const base = await s.app.listen({ port: 0, host: '127.0.0.1' });
  assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/);
  const json = { 'content-type': 'application/json' };

  // 1. The management admin creates a tenant.
  const created = await fetch(`${base}/tenant/tenants`, {
    method: 'POST',
    headers: { ...json, authorization: s.management },
    body: JSON.stringify({ id: 'seedco', company: 'Seed Co', domain: 'seedco.example.com', adminName: 'admin', adminPass: 'seedco-admin-pass' }),
  });
  assert.equal(created.status, 201);
  assert.match(created.headers.get('content-type') ?? '', /application\/json/);
  const tenant = (await created.json()) as { id: string; self: string; status: string };
  assert.equal(tenant.id, 'seedco');
  assert.equal(tenant.status, 'ACTIVE');
  assert.equal(tenant.self, `${base}/tenant/tenants/seedco`, 'links point at the address the client used');
  const admin = `Basic ${Buffer.from('seedco/admin:seedco-admin-pass').toString('base64')}`;

  // 2. The tenant admin uploads the guide's CA: openssl-made, newlines removed, the flag as a string.
  const ca = await guideCa(t, 'Seed Co Root CA');
  const body = `{
    "status" :  "ENABLED",
    "name" : "certificateName",
    "autoRegistrationEnabled" : "true",
    "certInPemFormat" : "${withoutNewlines(ca.certPem)}"
}`;
  const uploaded = await fetch(`${base}/tenant/tenants/seedco/trusted-certificates`, {
    method: 'POST',
    headers: { ...json, authorization: admin, accept: 'application/json' },
    body,
  });
  assert.equal(uploaded.status, 201, await uploaded.clone().text());
  const cert = (await uploaded.json()) as Record<string, unknown>;
  const der = Buffer.from(ca.certPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  assert.equal(cert.fingerprint, crypto.createHash('sha1').update(der).digest('hex'));
  assert.equal(cert.name, 'certificateName');
  assert.equal(cert.status, 'ENABLED');
  assert.equal(cert.autoRegistrationEnabled, true);
  assert.equal(cert.certInPemFormat, der.toString('base64'));
  assert.equal(cert.version, 3);
  assert.equal(cert.self, `${base}/tenant/tenants/seedco/trusted-certificates/${cert.fingerprint}`);

  // 3. It is listed, and readable at its self link.
  const listed = await fetch(`${base}/tenant/tenants/seedco/trusted-certificates?pageSize=10&withTotalPages=true`, { headers: { authorization: admin } });
  assert.equal(listed.status, 200);
  const list = (await listed.json()) as { certificates: Array<{ fingerprint: string }>; statistics: Record<string, number>; self: string };
  assert.deepEqual(list.certificates.map((c) => c.fingerprint), [cert.fingerprint]);
  assert.deepEqual(list.statistics, { currentPage: 1, pageSize: 10, totalPages: 1 });
  assert.ok(list.self.startsWith(`${base}/tenant/tenants/seedco/trusted-certificates?`));
  const one = await fetch(String(cert.self), { headers: { authorization: admin } });
  assert.deepEqual(await one.json(), cert);

  // Errors over the wire: the contract's shape, no 500.
  const unauthorized = await fetch(`${base}/tenant/tenants/seedco/trusted-certificates`, { headers: { authorization: 'Basic bm9ib2R5' } });
  assert.equal(unauthorized.status, 401);
  const error = (await unauthorized.json()) as Record<string, string>;
  assert.deepEqual(Object.keys(error).sort(), ['error', 'info', 'message']);
  const malformed = await fetch(`${base}/tenant/tenants/seedco/devices`, { method: 'POST', headers: { ...json, authorization: admin }, body: '{"name":' });
  assert.equal(malformed.status, 400);
  assert.equal(((await malformed.json()) as { error: string }).error, 'request/BadRequest');
  const huge = await fetch(`${base}/tenant/tenants/seedco/devices`, {
    method: 'POST',
    headers: { ...json, authorization: admin },
    body: JSON.stringify({ name: 'x'.repeat(5 * 1024 * 1024) }),
  });
  assert.equal(huge.status, 413);
  const unknownRoute = await fetch(`${base}/no/such/route`);
  assert.equal(unknownRoute.status, 404);
  assert.equal(((await unknownRoute.json()) as { error: string }).error, 'general/NotFound');

  // 4. Operations.
  const health = await fetch(`${base}/health`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: 'UP' });
  const ready = await fetch(`${base}/ready`);
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { status: 'READY' });

  const metrics = await fetch(`${base}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
  const text = await metrics.text();
  assert.ok(!text.startsWith('"'), 'Prometheus text, not a JSON string');
  assert.match(text, /# TYPE certgate_http_request_duration_seconds histogram/);
  assert.match(text, /certgate_http_request_duration_seconds_count\{method="POST",route="\/tenant\/tenants\/:tenantId\/trusted-certificates",status="201"\} 1/);
  assert.match(text, /certgate_http_request_duration_seconds_bucket\{[^}]*le="\+Inf"[^}]*\}/);
  assert.match(text, /# TYPE certgate_verifier_decisions_total counter/);
  assert.ok(!text.includes('seedco'), 'metrics are labelled by route template, never by tenant');

  // 5. Swagger UI and the OpenAPI document.
  const docs = await fetch(`${base}/docs`, { redirect: 'follow' });
  assert.equal(docs.status, 200);
  assert.match(docs.headers.get('content-type') ?? '', /text\/html/);
  const html = await docs.text();
  assert.match(html, /swagger-ui/i);
  const docJson = await fetch(`${base}/docs/json`);
  assert.equal(docJson.status, 200);
  const doc = (await docJson.json()) as { openapi: string; info: { title: string }; paths: Record<string, Record<string, { operationId: string }>> };
  assert.match(doc.openapi, /^3\.1\./);
  assert.equal(doc.info.title, 'certgate');
  assert.equal(doc.paths['/tenant/tenants/{tenantId}/trusted-certificates']?.post?.operationId, 'createTrustedCertificate');
  assert.deepEqual(doc, JSON.parse(JSON.stringify(s.app.swagger())), '/docs/json serves the generated document');
});
