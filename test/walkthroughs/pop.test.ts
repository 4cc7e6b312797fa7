/**
 * docs/walkthroughs.md, "5. Proof of possession", run as written against a started certgate:
 * the verification code signed with `openssl dgst -sha256 -sign` and with `certgate certs pop`.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { apiOk } from '../helpers/service.js';
import { runWalkthrough, serviceForFile } from './harness.js';

const AUTH = 'pop-demo/admin:pop-demo-admin-pass';
const T = '/tenant/tenants/pop-demo';

describe('walkthrough: proof of possession', () => {
  const env = serviceForFile();

  test('ok/pop: openssl dgst and certgate certs pop prove possession; another key does not', async (t) => {
    const e = env();
    const run = await runWalkthrough(t, 'pop', e);
    assert.match(run.all, /^code: \S{8,}$/m, 'a verification code was issued');
    assert.match(run.all, /^400\ntrustedCertificate\/ProofOfPossessionInvalid$/m, 'the wrong key: 400 with its error');
    const certs = (await apiOk(e.service.httpUrl, 'GET', `${T}/trusted-certificates?pageSize=10`, AUTH)).certificates as Array<Record<string, any>>;
    assert.deepEqual(
      certs.map((c) => `${c.name} ${c.proofOfPossessionValid} ${c.algorithmName}`).sort(),
      ['PoP Demo CA true SHA256withRSA', 'PoP Demo EC CA true SHA256withECDSA'],
    );
  });
});
