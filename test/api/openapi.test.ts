/**
 * The OpenAPI document is generated from the route schemas; the committed `openapi/openapi.json`
 * must be exactly what the code generates (`npm run openapi` refreshes it), and every operation
 * must be documented completely: tags, operationId, description, parameters, and responses that
 * include the error shape `{error, message, info}`.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { test } from 'node:test';
import { generateOpenApiDocument, serializeOpenApi } from '../../src/openapi-document.js';
import { dereference } from '../helpers/routes.js';

const FILE = new URL('../../openapi/openapi.json', import.meta.url);
const METHODS = ['get', 'post', 'put', 'delete', 'patch'];

type Json = Record<string, any>;

function isErrorShape(response: Json | undefined): boolean {
  const schema = response?.content?.['application/json']?.schema;
  return (
    schema?.type === 'object' &&
    ['error', 'message', 'info'].every((k) => schema.required?.includes(k) && schema.properties?.[k]?.type === 'string')
  );
}

function operations(doc: Json): Array<{ key: string; path: string; method: string; op: Json }> {
  const out = [];
  for (const [path, item] of Object.entries<Json>(doc.paths)) {
    for (const [method, op] of Object.entries<Json>(item)) {
      if (METHODS.includes(method)) out.push({ key: `${method.toUpperCase()} ${path}`, path, method, op });
    }
  }
  return out;
}

test('openapi/openapi.json is exactly what the route schemas generate (run `npm run openapi` after changing a route)', async () => {
  const generated = serializeOpenApi(await generateOpenApiDocument());
  const committed = await fs.readFile(FILE, 'utf8').catch(() => '');
  assert.ok(committed, 'openapi/openapi.json exists; create it with `npm run openapi`');
  if (committed !== generated) {
    const a = JSON.parse(committed) as Json;
    const b = JSON.parse(generated) as Json;
    const onlyCommitted = operations(a).map((o) => o.key).filter((k) => !operations(b).some((o) => o.key === k));
    const onlyGenerated = operations(b).map((o) => o.key).filter((k) => !operations(a).some((o) => o.key === k));
    assert.fail(
      'openapi/openapi.json differs from the generated document; run `npm run openapi` and commit it.' +
        (onlyGenerated.length ? `\n  routes missing from the file: ${onlyGenerated.join(', ')}` : '') +
        (onlyCommitted.length ? `\n  routes no longer in the code: ${onlyCommitted.join(', ')}` : ''),
    );
  }
});

test('the document: OpenAPI 3.1, certgate, both security schemes', async () => {
  const doc = dereference(await generateOpenApiDocument()) as Json;
  assert.match(doc.openapi, /^3\.1\./);
  assert.equal(doc.info.title, 'certgate');
  assert.match(doc.info.version, /^\d+\.\d+\.\d+$/);
  assert.ok(doc.info.description.length > 20);
  assert.deepEqual(doc.components.securitySchemes.basicAuth, {
    type: 'http',
    scheme: 'basic',
    description: 'Login `<tenantId>/<userName>` and password',
  });
  assert.equal(doc.components.securitySchemes.verifierToken.scheme, 'bearer');
  assert.deepEqual(doc.security, [{ basicAuth: [] }]);
});

test('every operation has tags, a unique operationId, a description, its parameters and responses with the error shape', async () => {
  const doc = dereference(await generateOpenApiDocument()) as Json;
  const ops = operations(doc);
  assert.ok(ops.length >= 30, `${ops.length} operations`);
  const ids = new Set<string>();
  const problems: string[] = [];
  const problem = (key: string, what: string) => problems.push(`${key}: ${what}`);

  for (const { key, path, op } of ops) {
    if (!Array.isArray(op.tags) || op.tags.length === 0 || op.tags.some((t: unknown) => typeof t !== 'string' || !t)) problem(key, 'no tags');
    if (typeof op.operationId !== 'string' || !/^[a-z][A-Za-z0-9]+$/.test(op.operationId)) problem(key, 'no camelCase operationId');
    else if (ids.has(op.operationId)) problem(key, `operationId ${op.operationId} used twice`);
    else ids.add(op.operationId);
    if (typeof op.description !== 'string' || op.description.trim().length < 10) problem(key, 'no description');

    // Path parameters are declared, required.
    for (const [, name] of path.matchAll(/\{(\w+)\}/g)) {
      const p = (op.parameters ?? []).find((x: Json) => x.in === 'path' && x.name === name);
      if (!p) problem(key, `path parameter {${name}} not declared`);
      else if (p.required !== true) problem(key, `path parameter {${name}} not required`);
    }

    const responses: Json = op.responses ?? {};
    const statuses = Object.keys(responses);
    const success = statuses.filter((s) => /^2\d\d$/.test(s));
    if (success.length === 0) problem(key, 'no success response');
    for (const s of success) {
      if (s === '204') continue;
      const content = responses[s].content ?? {};
      if (!Object.values<Json>(content).some((c) => c.schema)) problem(key, `response ${s} has no schema`);
    }
    const errors = statuses.filter((s) => s === 'default' || /^[45]\d\d$/.test(s));
    if (errors.length === 0) problem(key, 'no error response');
    for (const s of errors) if (!isErrorShape(responses[s])) problem(key, `response ${s} is not the error shape {error, message, info}`);

    // What each kind of operation can answer is documented.
    const security: Json[] = op.security ?? doc.security;
    const basic = security.some((s) => 'basicAuth' in s);
    const bearer = security.some((s) => 'verifierToken' in s);
    if ((basic || bearer) && !responses['401']) problem(key, 'authenticated but no 401');
    if (basic && !responses['429']) problem(key, 'Basic authentication is rate limited but no 429');
    if (basic && !responses['403'] && !responses['404']) problem(key, 'tenant-scoped or role-limited but neither 403 nor 404');
    if (path.includes('{') && !responses['404'] && !bearer) problem(key, 'names a resource but no 404');
    if (op.requestBody) {
      if (!responses['400']) problem(key, 'takes a body but no 400');
      if (!responses['413']) problem(key, 'takes a body but no 413');
    }
    if (op.parameters?.some((p: Json) => p.in === 'query') && !responses['400']) problem(key, 'takes a query but no 400');
    if (!basic && !bearer && !['/health', '/ready', '/metrics'].includes(path)) problem(key, 'no authentication declared');
  }
  assert.deepEqual(problems, []);
});

test('operations without authentication are exactly the operational endpoints', async () => {
  const doc = dereference(await generateOpenApiDocument()) as Json;
  const open = operations(doc)
    .filter(({ op }) => (op.security ?? doc.security).length === 0)
    .map((o) => o.key)
    .sort();
  assert.deepEqual(open, ['GET /health', 'GET /metrics', 'GET /ready']);
});
