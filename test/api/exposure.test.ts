/**
 * What the API exposes without a login, and the settings that change it: METRICS_TOKEN protects
 * /metrics (Bearer), METRICS_ENABLED=false and DOCS_ENABLED=false remove /metrics and /docs.
 * Also that every operation of the OpenAPI document has a summary and every tag a description,
 * and that the seed bodies have examples, as Swagger UI shows them.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { buildApp, type AppDeps } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createPrismaClient } from '../../src/db/prisma.js';
import { createMetrics } from '../../src/plugins/metrics.js';

/** The app on a database nobody listens at: these routes never reach it. */
async function app(t: TestContext, extra: Partial<AppDeps> = {}) {
  const prisma = createPrismaClient('postgresql://nobody@127.0.0.1:1/none');
  const a = await buildApp({
    prisma,
    publisher: { publish: async () => {} },
    metrics: createMetrics(),
    readiness: async () => {},
    verifierTokenSha256: '0'.repeat(64),
    logger: false,
    ...extra,
  });
  t.after(async () => {
    await a.close();
    await prisma.$disconnect();
  });
  return a;
}

test('by default /metrics, /docs and /docs/json answer without a login', async (t) => {
  const a = await app(t);
  assert.equal((await a.inject('/metrics')).statusCode, 200);
  assert.equal((await a.inject('/docs/json')).statusCode, 200);
  assert.ok([200, 302].includes((await a.inject('/docs')).statusCode));
});

test('Swagger UI: the page and its files are served under /docs', async (t) => {
  const a = await app(t);
  const page = await a.inject('/docs');
  assert.equal(page.statusCode, 200);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  assert.match(page.body, /static\/swagger-ui-bundle\.js/);
  for (const [file, type] of [['swagger-ui.css', /^text\/css/], ['swagger-ui-bundle.js', /javascript/], ['swagger-initializer.js', /javascript/]] as const) {
    const res = await a.inject(`/docs/static/${file}`);
    assert.equal(res.statusCode, 200, file);
    assert.match(String(res.headers['content-type']), type, file);
    assert.ok(res.rawPayload.length > 100, `${file} has content`);
  }
  assert.equal((await a.inject('/docs/static/not-there.js')).statusCode, 404);
});

test('METRICS_TOKEN: /metrics answers only its bearer token; 401 says Bearer', async (t) => {
  const a = await app(t, { metricsToken: 'metrics-token-0123456789' });
  const none = await a.inject('/metrics');
  assert.equal(none.statusCode, 401);
  assert.equal(none.headers['www-authenticate'], 'Bearer realm="certgate"');
  assert.equal(none.json().error, 'metrics/Unauthorized');
  assert.equal((await a.inject({ url: '/metrics', headers: { authorization: 'Bearer wrong-token-0123456789' } })).statusCode, 401);
  const ok = await a.inject({ url: '/metrics', headers: { authorization: 'Bearer metrics-token-0123456789' } });
  assert.equal(ok.statusCode, 200);
  assert.match(ok.body, /# TYPE /);
  assert.equal((await a.inject('/health')).statusCode, 200, 'probes stay open');
});

test('METRICS_ENABLED=false and DOCS_ENABLED=false remove the routes', async (t) => {
  const a = await app(t, { metricsEnabled: false, docs: false });
  assert.equal((await a.inject('/metrics')).statusCode, 404);
  assert.equal((await a.inject('/docs')).statusCode, 404);
  assert.equal((await a.inject('/docs/json')).statusCode, 404);
  assert.equal((await a.inject('/health')).statusCode, 200);
  // Error bodies do not send the reader to the removed /docs.
  const notFound = await a.inject('/docs');
  const unauthorized = await a.inject('/tenant/tenants');
  const notReadyApp = await app(t, { docs: false, readiness: async () => Promise.reject(new Error('database unreachable')) });
  const notReady = await notReadyApp.inject('/ready');
  for (const [what, res, status] of [['404', notFound, 404], ['401', unauthorized, 401], ['/ready', notReady, 503]] as const) {
    assert.equal(res.statusCode, status, what);
    assert.equal(res.json().info, "certgate's openapi/openapi.json (/docs is disabled)", what);
  }
  const withDocs = await app(t);
  assert.equal((await withDocs.inject('/nowhere')).json().info, '/docs');
});

test('the settings are read from the environment, as true/false', () => {
  const c = loadConfig({ METRICS_TOKEN: 'metrics-token-0123456789', METRICS_ENABLED: 'false', DOCS_ENABLED: '0' });
  assert.equal(c.METRICS_TOKEN, 'metrics-token-0123456789');
  assert.equal(c.METRICS_ENABLED, false);
  assert.equal(c.DOCS_ENABLED, false);
  const d = loadConfig({});
  assert.equal(d.METRICS_ENABLED, true);
  assert.equal(d.DOCS_ENABLED, true);
  assert.throws(() => loadConfig({ DOCS_ENABLED: 'maybe' }), /DOCS_ENABLED: must be true or false/);
  assert.throws(() => loadConfig({ METRICS_TOKEN: 'short' }), /METRICS_TOKEN: must be at least 16 characters/);
});

test('a bad port or number is named with what it must be, in plain words', () => {
  assert.throws(
    () => loadConfig({ HTTP_PORT: 'abc', MQTT_TLS_PORT: '70000', MQTT_MAX_INFLIGHT: 'x' }),
    (err: Error) => {
      assert.equal(
        err.message,
        'invalid environment:\n  - HTTP_PORT: must be a port number 0-65535\n  - MQTT_TLS_PORT: must be a port number 0-65535\n  - MQTT_MAX_INFLIGHT: must be a number',
      );
      return true;
    },
  );
});

test('Swagger UI: every operation has a summary, every tag a description, the seed bodies examples', async (t) => {
  const a = await app(t);
  const doc = (await a.inject('/docs/json')).json() as {
    tags: Array<{ name: string; description?: string }>;
    paths: Record<string, Record<string, { summary?: string; tags?: string[]; requestBody?: { content: Record<string, { schema?: unknown; example?: unknown; examples?: unknown }> } }>>;
  };
  const described = new Map(doc.tags.map((tag) => [tag.name, tag.description]));
  const missing: string[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!op.summary?.trim()) missing.push(`${method.toUpperCase()} ${path}: no summary`);
      for (const tag of op.tags ?? []) if (!described.get(tag)?.trim()) missing.push(`${method.toUpperCase()} ${path}: tag ${tag} has no description`);
    }
  }
  assert.deepEqual(missing, []);
  const example = (path: string): unknown => {
    const body = doc.paths[path]?.post?.requestBody?.content['application/json'];
    return body?.example ?? (body?.schema as { examples?: unknown[] } | undefined)?.examples?.[0];
  };
  assert.ok(example('/tenant/tenants'), 'tenant create has an example');
  assert.ok(example('/tenant/tenants/{tenantId}/trusted-certificates'), 'trusted certificate upload has an example');
  assert.ok(example('/verifier/v1/authenticate'), 'authenticate has an example');
});
