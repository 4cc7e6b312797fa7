/**
 * Proof of possession: a verification code usable for ten minutes, signed with the
 * CA key by `openssl dgst -sha256 -sign ca.key`, base64.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { build, type TestApp } from '../helpers/app.js';
import { createCa, type Credentials } from '../../src/certs/certs-service.js';
import { api, openssl, tempDir, tenant, trust, type Tenant } from './fixtures.js';

/** What the Cumulocity guide has users run: `printf %s CODE > code.txt; openssl dgst -sha256 -sign ca.key code.txt | openssl base64`. */
async function opensslSign(t: TestContext, keyPem: string, message: string, opts: { oneLine?: boolean } = {}): Promise<string> {
  const dir = await tempDir(t);
  await fs.writeFile(path.join(dir, 'ca.key'), keyPem);
  await fs.writeFile(path.join(dir, 'code.txt'), message);
  await openssl(dir, 'dgst', '-sha256', '-sign', 'ca.key', '-out', 'code.sig', 'code.txt');
  return (await openssl(dir, 'base64', ...(opts.oneLine ? ['-A'] : []), '-in', 'code.sig')).toString('utf8');
}

interface Setup {
  s: TestApp;
  acme: Tenant;
  ca: Credentials;
  fp: string;
  code(): Promise<{ status: number; body: any }>;
  prove(signature: string): Promise<{ status: number; body: any; text: string }>;
}

async function setup(t: TestContext, key: 'rsa' | 'ec'): Promise<Setup> {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  const ca = await createCa({ cn: `PoP ${key} CA`, key });
  const fp = await trust(s, acme, ca.certPem);
  const base = `/tenant/tenants/acme/trusted-certificates-pop/${fp}`;
  return {
    s,
    acme,
    ca,
    fp,
    code: () => api(s, 'POST', `${base}/verification-code`, acme.auth),
    prove: (signature) => api(s, 'POST', `${base}/pop`, acme.auth, { proofOfPossessionSignedVerificationCode: signature }),
  };
}

for (const key of ['rsa', 'ec'] as const) {
  test(`proof of possession with an ${key.toUpperCase()} CA key: code usable ten minutes, openssl signature accepted once`, async (t) => {
    const p = await setup(t, key);
    const started = Date.now();
    const issued = await p.code();
    assert.equal(issued.status, 200);
    const code: string = issued.body.proofOfPossessionUnsignedVerificationCode;
    assert.match(code, /^\S{16,}$/);
    assert.equal(issued.body.proofOfPossessionValid, false);
    const until = Date.parse(issued.body.proofOfPossessionVerificationCodeUsableUntil);
    assert.ok(Math.abs(until - (started + 10 * 60_000)) < 30_000, `usable for ten minutes: ${issued.body.proofOfPossessionVerificationCodeUsableUntil}`);
    const shown = await api(p.s, 'GET', `/tenant/tenants/acme/trusted-certificates/${p.fp}`, p.acme.auth);
    assert.equal(shown.body.proofOfPossessionUnsignedVerificationCode, code, 'the code is shown while usable');

    // Refused: another key's signature, a signature over the code with a newline (`echo` without -n), garbage.
    const other = await createCa({ key });
    const refused: Array<[string, string]> = [
      ['fail/other-key', await opensslSign(t, other.keyPem, code)],
      ['fail/code-with-newline', await opensslSign(t, p.ca.keyPem, `${code}\n`)],
      ['fail/not-base64', '!!!!'],
      ['fail/empty-after-trim', '   '],
    ];
    for (const [name, signature] of refused) {
      const res = await p.prove(signature);
      assert.equal(res.status, 400, `${name}: ${res.text}`);
      assert.equal(typeof res.body.error, 'string', name);
    }
    assert.equal((await p.s.prisma.trustedCertificate.findFirstOrThrow({ where: { fingerprint: p.fp } })).popValid, false);

    // openssl's base64 output as it comes, wrapped at 64 columns with a trailing newline.
    const signature = await opensslSign(t, p.ca.keyPem, code);
    const ok = await p.prove(signature);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.body.proofOfPossessionValid, true);
    assert.equal(ok.body.proofOfPossessionUnsignedVerificationCode, undefined, 'the code is used up');
    const after = await api(p.s, 'GET', `/tenant/tenants/acme/trusted-certificates/${p.fp}`, p.acme.auth);
    assert.equal(after.body.proofOfPossessionValid, true);

    // A used code cannot be replayed.
    const replay = await p.prove(signature);
    assert.equal(replay.status, 400, replay.text);
  });
}

test('proof of possession: an expired code is refused; a new code replaces the old one', async (t) => {
  const p = await setup(t, 'ec');
  const first = (await p.code()).body.proofOfPossessionUnsignedVerificationCode;
  const signedFirst = await opensslSign(t, p.ca.keyPem, first, { oneLine: true });

  // Ten minutes pass.
  await p.s.prisma.trustedCertificate.updateMany({ where: { fingerprint: p.fp }, data: { popCodeUsableUntil: new Date(Date.now() - 1000) } });
  const expired = await p.prove(signedFirst);
  assert.equal(expired.status, 400, expired.text);
  assert.match(expired.body.error, /Expired/);
  const shown = await api(p.s, 'GET', `/tenant/tenants/acme/trusted-certificates/${p.fp}`, p.acme.auth);
  assert.equal(shown.body.proofOfPossessionUnsignedVerificationCode, undefined, 'an expired code is not shown');

  // No code requested at all.
  const fresh = await setup(t, 'ec');
  const none = await fresh.prove(await opensslSign(t, fresh.ca.keyPem, 'anything'));
  assert.equal(none.status, 400, none.text);

  const second = (await p.code()).body.proofOfPossessionUnsignedVerificationCode;
  assert.notEqual(second, first);
  const third = (await p.code()).body.proofOfPossessionUnsignedVerificationCode;
  assert.equal((await p.prove(await opensslSign(t, p.ca.keyPem, second))).status, 400, 'a replaced code no longer counts');
  const ok = await p.prove(await opensslSign(t, p.ca.keyPem, third, { oneLine: true }));
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.body.proofOfPossessionValid, true);

  // Other tenants see nothing; unknown fingerprints are 404.
  const other = await tenant(p.s, 'other');
  assert.equal((await api(p.s, 'POST', `/tenant/tenants/acme/trusted-certificates-pop/${p.fp}/verification-code`, other.auth)).status, 404);
  assert.equal((await api(p.s, 'POST', `/tenant/tenants/acme/trusted-certificates-pop/${'0'.repeat(40)}/verification-code`, p.acme.auth)).status, 404);
});
