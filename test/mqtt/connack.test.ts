/**
 * CONNECT decisions: allow, deny, no certificate and an unavailable verifier,
 * each as MQTT 3.1.1 and MQTT 5 CONNACK codes, over real TLS with MQTT.js.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import tls from 'node:tls';
import { createIntermediate } from '../../src/certs/certs-service.js';
import { VerifierUnavailableError } from '../../src/verifier/verifier-types.js';
import { TestVerifier, connect, device, refused, startListener, tenantPki, waitFor, withoutRoot } from './harness.js';

describe('MQTT listener: CONNACK', async () => {
  const acme = await tenantPki('acme');
  const dev1 = await device(acme.intermediate, 'dev1');
  const denied = await device(acme.intermediate, 'deny-me');
  const stranger = await device((await tenantPki('nobody')).intermediate, 'dev1');
  const explode = await device(acme.intermediate, 'explode');

  const setup = async (t: import('node:test').TestContext) => {
    const verifier = new TestVerifier();
    verifier.trust('acme', acme.root);
    const l = await startListener(t, verifier);
    return { verifier, l };
  };

  for (const protocolVersion of [4, 5] as const) {
    test(`ok/allow-v${protocolVersion}: accepted, the verifier saw leaf + intermediate, username and SNI`, async (t) => {
      const { verifier, l } = await setup(t);
      const client = await connect(t, l, { creds: dev1, chain: true, clientId: 'dev1', username: 'acme', protocolVersion });
      assert.equal(client.connected, true);
      const req = verifier.requests.at(-1)!;
      assert.equal(req.clientId, 'dev1');
      assert.equal(req.username, 'acme');
      assert.equal(req.sni, 'localhost');
      assert.equal(req.certificateChain.length, 2);
      assert.equal(Buffer.from(req.certificateChain[0]!, 'base64').equals(Buffer.from(dev1.certDer)), true);
      assert.equal(Buffer.from(req.certificateChain[1]!, 'base64').equals(Buffer.from(acme.intermediate.certDer)), true);
      assert.equal(l.listener.stats.sessions, 1);
      await waitFor(() => l.connected.length === 1);
      assert.deepEqual({ ...l.connected[0], at: undefined }, { tenantId: 'acme', deviceId: 'acme:dev1', at: undefined });
    });

    const notAuthorized = protocolVersion === 5 ? 0x87 : 5;
    const unavailable = protocolVersion === 5 ? 0x88 : 3;

    test(`fail/deny-v${protocolVersion}: the verifier's deny is CONNACK ${notAuthorized}`, async (t) => {
      const { l } = await setup(t);
      assert.equal(await refused(t, l, { creds: denied, chain: true, protocolVersion }), notAuthorized);
      assert.equal(await refused(t, l, { creds: stranger, chain: true, protocolVersion }), notAuthorized);
      assert.equal(l.listener.stats.notAuthorized, 2);
    });

    test(`fail/no-client-certificate-v${protocolVersion}: CONNACK ${notAuthorized} without asking the verifier`, async (t) => {
      const { verifier, l } = await setup(t);
      assert.equal(await refused(t, l, { protocolVersion }), notAuthorized);
      assert.equal(verifier.requests.length, 0);
    });

    test(`fail/verifier-unavailable-v${protocolVersion}: CONNACK ${unavailable} for an unavailable, failing or slow verifier`, async (t) => {
      const { verifier, l } = await setup(t);
      verifier.failWith = new VerifierUnavailableError('database down');
      assert.equal(await refused(t, l, { creds: dev1, chain: true, protocolVersion }), unavailable);
      verifier.failWith = undefined;
      assert.equal(await refused(t, l, { creds: explode, chain: true, protocolVersion }), unavailable);
      assert.equal(l.listener.stats.serverUnavailable, 2);
    });
  }

  test('fail/verifier-timeout: a verifier that does not answer in time is unavailable', async (t) => {
    const verifier = new TestVerifier();
    verifier.trust('acme', acme.root);
    verifier.delayMs = 2_000;
    const l = await startListener(t, verifier, { authenticateTimeoutMs: 200 });
    assert.equal(await refused(t, l, { creds: dev1, chain: true }), 3);
  });

  test('ok/empty-client-id: an MQTT 5 client gets an assigned client id', async (t) => {
    const { verifier, l } = await setup(t);
    const client = await connect(t, l, { creds: dev1, chain: true, clientId: '', protocolVersion: 5 });
    assert.equal(verifier.requests.at(-1)!.clientId, '');
    const connack = (client as unknown as { connackPacket: { properties?: { assignedClientIdentifier?: string } } }).connackPacket;
    assert.match(connack.properties?.assignedClientIdentifier ?? '', /^auto-[0-9a-f]{24}$/);
  });

  test('ok/takeover: a second connection with the same client id in the same tenant replaces the first', async (t) => {
    const { l } = await setup(t);
    const first = await connect(t, l, { creds: dev1, chain: true, clientId: 'dev1' });
    const closed = new Promise<void>((r) => first.once('close', () => r()));
    await connect(t, l, { creds: dev1, chain: true, clientId: 'dev1' });
    await closed;
    await waitFor(() => l.listener.stats.sessions === 1, 2_000, 'one live session');
  });

  test('ok/chain-as-sent: intermediates sent out of order reach the verifier in the order sent', async (t) => {
    const { verifier, l } = await setup(t);
    const lower = await createIntermediate({ issuer: acme.intermediate, cn: 'acme Line 2 CA' });
    const deep = await device(lower, 'deep1');
    // Leaf, then the upper intermediate before the lower one: Node's getPeerCertificate(true)
    // would stop after the lower one; the verifier must still get both.
    const client = await connect(t, l, { creds: deep, cert: deep.certPem + acme.intermediate.certPem + lower.certPem, clientId: 'deep1' });
    assert.equal(client.connected, true);
    const got = verifier.requests.at(-1)!.certificateChain.map((b) => Buffer.from(b, 'base64'));
    assert.deepEqual(got, [deep.certDer, acme.intermediate.certDer, lower.certDer].map((d) => Buffer.from(d)));
  });

  test('ok/no-resumption: a client offering a saved TLS session gets a full handshake and its chain is seen again', async (t) => {
    const { verifier, l } = await setup(t);
    const open = (session?: Buffer) =>
      new Promise<{ reused: boolean; session: Buffer | undefined }>((resolve, reject) => {
        let saved: Buffer | undefined;
        const s = tls.connect(
          { host: '127.0.0.1', port: l.port, servername: 'localhost', ca: l.caPem, key: dev1.keyPem, cert: withoutRoot(dev1), ...(session ? { session } : {}) },
          () => {
            s.write(connectPacket('dev1'));
          },
        );
        s.on('session', (sess: Buffer) => (saved = sess));
        s.on('data', () => {
          const reused = s.isSessionReused();
          s.end();
          setTimeout(() => resolve({ reused, session: saved }), 50);
        });
        s.on('error', reject);
      });
    const first = await open();
    assert.ok(first.session, "the server handed out a session to offer back");
    const second = await open(first.session);
    assert.equal(second.reused, false);
    assert.equal(verifier.requests.at(-1)!.certificateChain.length, 2);
  });
});

/** A raw MQTT 3.1.1 CONNECT for `clientId`. */
function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId);
  const rest = Buffer.concat([Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 60, id.length >> 8, id.length & 0xff]), id]);
  return Buffer.concat([Buffer.from([0x10, rest.length]), rest]);
}
