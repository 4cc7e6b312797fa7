/**
 * Which tenant gets a chain that several tenants' trusted certificates anchor: a hint decides;
 * without one, the single tenant that proved possession of the CA key, else the tenant that
 * trusted the CA first; AMBIGUOUS_TENANT only when several proved possession.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chooseTenant, type TenantClaim } from '../../src/verifier/tenant-choice.js';

const at = (minute: number) => new Date(Date.UTC(2026, 0, 1, 0, minute));
const claim = (tenantId: string, minute: number, popValid = false): TenantClaim => ({ tenantId, anchor: { popValid, creationTime: at(minute) } });

const cases: Array<{ name: string; claims: TenantClaim[]; hint?: { username?: string; sni?: string }; expect: string }> = [
  { name: 'ok/only-tenant', claims: [claim('beta', 5)], expect: 'beta:only' },
  { name: 'ok/first-without-possession', claims: [claim('beta', 5), claim('alpha', 1)], expect: 'alpha:first' },
  { name: 'ok/first-tie-by-tenant-id', claims: [claim('beta', 1), claim('alpha', 1)], expect: 'alpha:first' },
  { name: 'ok/single-possession-beats-first', claims: [claim('alpha', 1), claim('beta', 5, true)], expect: 'beta:possession' },
  { name: 'ok/single-possession-of-three', claims: [claim('alpha', 1), claim('beta', 5), claim('gamma', 9, true)], expect: 'gamma:possession' },
  { name: 'fail/several-possessions', claims: [claim('alpha', 1, true), claim('beta', 5, true), claim('gamma', 0)], expect: 'AMBIGUOUS_TENANT:alpha,beta' },
  { name: 'ok/hint-username', claims: [claim('alpha', 1, true), claim('beta', 5, true)], hint: { username: 'beta' }, expect: 'beta:hint' },
  { name: 'ok/hint-cumulocity-login', claims: [claim('alpha', 1), claim('beta', 5)], hint: { username: 'beta/device_x' }, expect: 'beta:hint' },
  { name: 'ok/hint-sni', claims: [claim('alpha', 1, true), claim('beta', 5)], hint: { sni: 'beta.mqtt.example.com' }, expect: 'beta:hint' },
  { name: 'ok/hint-username-before-sni', claims: [claim('alpha', 1), claim('beta', 5)], hint: { username: 'beta', sni: 'alpha.example.com' }, expect: 'beta:hint' },
  { name: 'ok/hint-of-no-claimant-ignored', claims: [claim('alpha', 1), claim('beta', 5, true)], hint: { username: 'gamma' }, expect: 'beta:possession' },
];

for (const c of cases) {
  test(`tenant choice ${c.name}`, () => {
    const r = chooseTenant(c.claims, c.hint ?? {});
    assert.equal(r.ok ? `${r.claim.tenantId}:${r.why}` : `${r.reason}:${r.provers.join(',')}`, c.expect);
  });
}
