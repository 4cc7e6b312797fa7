import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkRegexSafety, expandedSize, extractIdentity, matchIdentity, MAX_IDENTITY_INPUT, type IdentityRule } from '../../src/pki/index.js';
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

describe('checkRegexSafety: RE2 syntax, bounded size', () => {
  const cases: { pattern: string; ok: boolean; message?: RegExp }[] = [
    { pattern: '^(.+)$', ok: true },
    { pattern: '^device-([a-z0-9]+)$', ok: true },
    { pattern: '^([^.]+)\\.devices\\.acme\\.com$', ok: true },
    { pattern: '^(.+)\\.group\\.company\\.com$', ok: true },
    { pattern: '^([A-Za-z0-9_.-]+)$', ok: true },
    { pattern: 'device-(.+)', ok: true },
    { pattern: '^[a-z0-9-]{1,64}$', ok: true },
    // Shapes that backtrack catastrophically in a backtracking engine are linear in RE2.
    { pattern: '(a+)+$', ok: true },
    { pattern: '^(\\w+\\s?)*$', ok: true },
    { pattern: '^(a?){25}a{25}$', ok: true },
    { pattern: '^(a|\\1a)*$', ok: false, message: /RE2 syntax is required.*backreference `\\1`/ },
    { pattern: '^(?<n>a)\\k<n>$', ok: false, message: /backreference `\\k`/ },
    { pattern: '^(?=dev)(.+)$', ok: false, message: /RE2 syntax is required.*lookaround `\(\?=`/ },
    { pattern: '^(?!x)(.+)$', ok: false, message: /lookaround `\(\?!`/ },
    { pattern: '(?<=x)a', ok: false, message: /lookaround `\(\?<=`/ },
    { pattern: 'a{99999999999}', ok: false, message: /too large/ },
    { pattern: '.{0,1000}', ok: false, message: /too large/ },
    { pattern: '((a{10}){10}){10}', ok: false, message: /too large/ },
    { pattern: '(', ok: false, message: /invalid regular expression.*missing closing \)/ },
    { pattern: '[z-a]', ok: false, message: /invalid character class range/ },
    { pattern: '', ok: false },
    { pattern: 'x'.repeat(600), ok: false },
  ];
  for (const c of cases) {
    it(`${c.ok ? 'accepts' : 'rejects'} ${JSON.stringify(c.pattern.length > 40 ? c.pattern.slice(0, 20) + '...' : c.pattern)}`, () => {
      const r = checkRegexSafety(c.pattern);
      assert.equal(r.ok, c.ok, r.ok ? 'accepted' : r.message);
      if (!r.ok) assert.match(r.message, c.message ?? /.{10}/);
    });
  }

  it('estimates the unrolled size from the text, as RE2 unrolls counted repetitions', () => {
    assert.equal(expandedSize('^(.+)$'), 3);
    assert.equal(expandedSize('a{10}'), 10);
    assert.equal(expandedSize('(ab){3}c'), 7);
    assert.equal(expandedSize('((a{10}){10}){10}'), 1000);
    assert.equal(expandedSize('[a-z{}]{2,4}\\p{Greek}'), 5);
  });

  it('matches a 61-character CN against accepted hostile-looking patterns in milliseconds', () => {
    const cn = 'a'.repeat(61);
    for (const pattern of ['^(a?){25}a{25}$', '(a+)+$', '^(\\w+\\s?)*$', '^(a|aa)+$', '^' + '(.?)'.repeat(60) + 'x$']) {
      assert.equal(checkRegexSafety(pattern).ok, true, pattern);
      const start = performance.now();
      for (let i = 0; i < 10; i++) matchIdentity(cn + 'b', pattern);
      const ms = performance.now() - start;
      // Linear-time matching: ten tries cost ~1 ms; a backtracking engine takes seconds on the first.
      assert.ok(ms < 1000, `${pattern}: ${ms.toFixed(1)} ms for 10 matches`);
    }
    assert.equal(matchIdentity('device-42', '^device-(\\d+)$'), '42');
    assert.equal(matchIdentity('device-42', '[0-9]+'), '42');
    assert.equal(matchIdentity('dev1.group.company.com', '^(.+)\\.group\\.company\\.com$'), 'dev1');
  });

  it('a stored pattern RE2 refuses matches nothing instead of failing', () => {
    assert.equal(matchIdentity('abab', '^(ab)\\1$'), null);
  });
});
