import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkRegexSafety, extractIdentity, MAX_IDENTITY_INPUT, nestedQuantifierCheck, type IdentityRule } from '../../src/pki/index.js';
import { makeLeaf, makeRoot } from '../helpers/pki-fixtures.js';

const root = makeRoot();
const cert = makeLeaf(root, {
  subject: 'CN=device-42,O=Acme',
  san: {
    dns: ['gw.example.org', 'dev42.devices.acme.com'],
    uri: ['https://acme.com/info', 'spiffe://my.domain.name/device/thermo-7', 'spiffe://my.domain.name/device/second'],
  },
}).parsed;

describe('extractIdentity', () => {
  const cases: { name: string; rule: IdentityRule; want: string | null }[] = [
    { name: 'default profile: whole CN', rule: { source: 'COMMON_NAME', pattern: '^(.+)$' }, want: 'device-42' },
    { name: 'CN capture group 1', rule: { source: 'COMMON_NAME', pattern: '^device-([0-9]+)$' }, want: '42' },
    { name: 'CN whole match without groups', rule: { source: 'COMMON_NAME', pattern: '[0-9]+' }, want: '42' },
    { name: 'CN no match', rule: { source: 'COMMON_NAME', pattern: '^sensor-(.+)$' }, want: null },
    { name: 'SAN URI after prefix (amqtt rule)', rule: { source: 'SAN_URI', pattern: '^(.+)$', uriPrefix: 'spiffe://my.domain.name/device/' }, want: 'thermo-7' },
    { name: 'SAN URI first with the prefix, pattern on the rest', rule: { source: 'SAN_URI', pattern: '^thermo-(\\d+)$', uriPrefix: 'spiffe://my.domain.name/device/' }, want: '7' },
    { name: 'SAN URI without a matching prefix', rule: { source: 'SAN_URI', pattern: '^(.+)$', uriPrefix: 'spiffe://other/' }, want: null },
    { name: 'SAN URI without prefix takes the first URI', rule: { source: 'SAN_URI', pattern: '^https://(.+)$' }, want: 'acme.com/info' },
    { name: 'SAN DNS first name that matches', rule: { source: 'SAN_DNS', pattern: '^([a-z0-9]+)\\.devices\\.acme\\.com$' }, want: 'dev42' },
    { name: 'SAN DNS none matches', rule: { source: 'SAN_DNS', pattern: '^x$' }, want: null },
  ];
  for (const c of cases) it(c.name, () => assert.equal(extractIdentity(cert, c.rule), c.want));

  it('finds nothing in a certificate without the source', () => {
    const bare = makeLeaf(root, { subject: 'O=No CN' }).parsed;
    assert.equal(extractIdentity(bare, { source: 'COMMON_NAME', pattern: '^(.+)$' }), null);
    assert.equal(extractIdentity(bare, { source: 'SAN_URI', pattern: '^(.+)$', uriPrefix: 'spiffe://' }), null);
  });

  it(`ignores source values longer than ${MAX_IDENTITY_INPUT} characters`, () => {
    const long = makeLeaf(root, { subject: 'O=x', san: { dns: ['a'.repeat(60) + '.' + 'b'.repeat(60)] } }).parsed;
    assert.equal(extractIdentity(long, { source: 'SAN_DNS', pattern: '^(.+)$' }), 'a'.repeat(60) + '.' + 'b'.repeat(60));
    const huge = makeLeaf(root, { subject: `CN=${'x'.repeat(MAX_IDENTITY_INPUT + 1)}` }).parsed;
    assert.equal(extractIdentity(huge, { source: 'COMMON_NAME', pattern: '^(.+)$' }), null);
  });
});

describe('checkRegexSafety', () => {
  const cases: { pattern: string; ok: boolean }[] = [
    { pattern: '^(.+)$', ok: true },
    { pattern: '^device-([a-z0-9]+)$', ok: true },
    { pattern: '^([^.]+)\\.devices\\.acme\\.com$', ok: true },
    { pattern: 'device-(.+)', ok: true },
    { pattern: '(a+)+$', ok: false },
    { pattern: '(a|a)*$', ok: false },
    { pattern: '^(\\w+\\s?)*$', ok: false },
    { pattern: '.*.*.*=.*', ok: false },
    { pattern: '(', ok: false },
    { pattern: '[z-a]', ok: false },
    { pattern: '', ok: false },
    { pattern: 'x'.repeat(600), ok: false },
  ];
  for (const c of cases) {
    it(`${c.ok ? 'accepts' : 'rejects'} ${JSON.stringify(c.pattern.length > 40 ? c.pattern.slice(0, 20) + '...' : c.pattern)}`, () => {
      const r = checkRegexSafety(c.pattern);
      assert.equal(r.ok, c.ok, r.ok ? 'accepted' : r.message);
      if (!r.ok) assert.ok(r.message.length > 10);
    });
  }

  it('the structural fallback refuses nested quantifiers', () => {
    assert.equal(nestedQuantifierCheck('(a+)+$').ok, false);
    assert.equal(nestedQuantifierCheck('(?:x*y)*').ok, false);
    assert.equal(nestedQuantifierCheck('^(.+)$').ok, true);
    assert.equal(nestedQuantifierCheck('^([a-z]+)-([0-9]+)$').ok, true);
    assert.equal(nestedQuantifierCheck('^[(+)]+$').ok, true);
  });
});
