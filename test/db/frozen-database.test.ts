/**
 * Every database call is bounded in time: with every PostgreSQL process frozen (SIGSTOP, as a hung
 * host or a stalled disk leaves it: connections stay open and nothing answers), REST requests and
 * verifier requests answer 503 with the error shape within 5 s instead of hanging for as long as
 * the freeze lasts; thawed, everything works again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDevice } from '../../src/certs/certs-service.js';
import { appOn, ownPostgres } from '../helpers/own-postgres.js';
import { api, authenticate, eventually, expectAllow, trustingTenant, type Reply } from '../verifier/fixtures.js';

async function timed(what: Promise<Reply>): Promise<Reply & { ms: number }> {
  const started = performance.now();
  const res = await what;
  return { ...res, ms: Math.round(performance.now() - started) };
}

function expectUnavailableWithin(res: Reply & { ms: number }, what: string): void {
  assert.equal(res.status, 503, `${what}: ${res.text}`);
  assert.equal(typeof res.body.error, 'string', what);
  assert.equal(typeof res.body.message, 'string', what);
  assert.equal(typeof res.body.info, 'string', what);
  assert.ok(res.ms < 5_000, `${what}: answered after ${res.ms} ms`);
}

test('a frozen database: REST and verifier requests answer 503 within 5 s, then work again once it thaws', { timeout: 120_000 }, async (t) => {
  const pg = await ownPostgres(t);
  const s = await appOn(t, pg.url);
  const { acme, ca } = await trustingTenant(s);
  const known = await createDevice({ issuer: ca, cn: 'known' });
  await expectAllow(s, { clientId: 'known', certificateChain: [known.certPem] });
  const listDevices = () => api(s, 'GET', '/tenant/tenants/acme/devices', acme.auth);
  assert.equal((await listDevices()).status, 200);

  const fresh = await createDevice({ issuer: ca, cn: 'fresh' });
  const freshReq = { clientId: 'fresh', certificateChain: [fresh.certPem] };
  const stopped = await pg.freeze();
  try {
    // More requests than the pool has connections: some wait for a connection, the rest for
    // statements the frozen server never answers. Then a second wave, on new connections the
    // frozen server never accepts.
    for (const wave of ['first', 'second']) {
      const replies = await Promise.all([
        ...Array.from({ length: 12 }, () => timed(listDevices())),
        timed(authenticate(s, freshReq)),
      ]);
      replies.slice(0, -1).forEach((r, i) => expectUnavailableWithin(r, `${wave} wave, REST request ${i}`));
      expectUnavailableWithin(replies.at(-1)!, `${wave} wave, verifier request for a new device`);
      console.log(`# ${wave} wave with ${stopped.length} PostgreSQL processes frozen: answered 503 in ${replies.map((r) => r.ms).join(', ')} ms`);
    }
  } finally {
    pg.thaw();
  }
  await eventually(async () => (await listDevices()).status === 200, 15_000, 'the API answers again');
  await expectAllow(s, freshReq, 'the new device once the database is back');
  const devices = await listDevices();
  assert.deepEqual(devices.body.devices.map((d: { name: string }) => d.name).sort(), ['fresh', 'known']);
});
