/**
 * Clients that misbehave are cut off, and the listener keeps serving everyone else: garbage
 * instead of TLS, garbage MQTT inside TLS, a TCP connection that never speaks, a TLS connection
 * that never sends CONNECT, packets over the size limit, a PUBLISH before CONNECT.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import tls from 'node:tls';
import type { Credentials } from '../../src/certs/certs-service.js';
import { TestVerifier, collect, connect, device, startListener, tenantPki, waitFor, withoutRoot, type RunningListener } from './harness.js';

/** Resolves with the ms it took the server to close the socket. */
function closedAfter(socket: net.Socket, limitMs = 8_000): Promise<number> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not close the connection')), limitMs);
    socket.on('error', () => {});
    socket.resume(); // read, or the end of the stream is never seen
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - start);
    });
  });
}

function tlsSocket(l: RunningListener, creds: Credentials): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: l.port, servername: 'localhost', ca: l.caPem, key: creds.keyPem, cert: withoutRoot(creds) }, () =>
      resolve(s),
    );
    s.once('error', reject);
  });
}

/** A raw MQTT 3.1.1 CONNECT for `clientId`. */
function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId);
  const variable = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 60]);
  const payload = Buffer.concat([Buffer.from([id.length >> 8, id.length & 0xff]), id]);
  const rest = Buffer.concat([variable, payload]);
  return Buffer.concat([Buffer.from([0x10, rest.length]), rest]);
}

describe('MQTT listener: robustness', async () => {
  const acme = await tenantPki('acme');
  const dev1 = await device(acme.intermediate, 'dev1');
  const dev2 = await device(acme.intermediate, 'dev2');

  const setup = async (t: TestContext) => {
    const verifier = new TestVerifier({
      acl: () => [{ permission: 'allow', action: 'subscribe', topic: 'devices/+/#' }],
    });
    verifier.trust('acme', acme.root);
    const l = await startListener(t, verifier, { connectTimeoutMs: 500, handshakeTimeoutMs: 500, maxPacketSize: 4096 });
    // A well-behaved pair that must keep working throughout.
    const watcher = await connect(t, l, { creds: dev2, chain: true, clientId: 'dev2', keepalive: 30 });
    const got = collect(watcher);
    await watcher.subscribeAsync('devices/dev1/#', { qos: 1 });
    const publisher = await connect(t, l, { creds: dev1, chain: true, clientId: 'dev1' });
    const stillServing = async (payload: string) => {
      await publisher.publishAsync('devices/dev1/x', payload, { qos: 1 });
      await waitFor(() => got.some((m) => m.payload === payload), 2_000, `delivery of ${payload}`);
      assert.equal(watcher.connected, true);
    };
    return { l, stillServing };
  };

  test('fail/garbage-tls: bytes that are not TLS are dropped at once', async (t) => {
    const { l, stillServing } = await setup(t);
    const s = net.connect(l.port, '127.0.0.1');
    const closed = closedAfter(s);
    s.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.ok((await closed) < 2_000);
    await waitFor(() => l.listener.stats.tlsErrors >= 1, 2_000, 'a TLS error counted');
    await stillServing('after garbage TLS');
  });

  test('fail/silent-tcp: a TCP connection that never starts TLS is cut off by the handshake timeout', async (t) => {
    const { l, stillServing } = await setup(t);
    const s = net.connect(l.port, '127.0.0.1');
    const ms = await closedAfter(s);
    assert.ok(ms >= 400 && ms < 3_000, `closed after ${ms} ms`);
    await stillServing('after silent TCP');
  });

  test('fail/silent-tls: TLS without CONNECT is cut off by the connect timeout', async (t) => {
    const { l, stillServing } = await setup(t);
    const s = await tlsSocket(l, dev1);
    const ms = await closedAfter(s);
    assert.ok(ms >= 400 && ms < 3_000, `closed after ${ms} ms`);
    assert.equal(l.listener.stats.connectTimeouts, 1);
    await stillServing('after silent TLS');
  });

  test('fail/partial-connect: half a CONNECT is cut off by the connect timeout', async (t) => {
    const { l, stillServing } = await setup(t);
    const s = await tlsSocket(l, dev1);
    s.write(connectPacket('dev1').subarray(0, 6));
    const ms = await closedAfter(s);
    assert.ok(ms >= 300 && ms < 3_000, `closed after ${ms} ms`);
    await stillServing('after partial CONNECT');
  });

  test('fail/garbage-mqtt: bytes that are not MQTT inside TLS close the connection', async (t) => {
    const { l, stillServing } = await setup(t);
    const s = await tlsSocket(l, dev1);
    const closed = closedAfter(s);
    s.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02]));
    assert.ok((await closed) < 1_000);
    const s2 = await tlsSocket(l, dev1);
    const closed2 = closedAfter(s2);
    s2.write(Buffer.from('\x10\x05MQTT!!!!'));
    assert.ok((await closed2) < 1_000);
    assert.ok(l.listener.stats.protocolErrors >= 2);
    await stillServing('after garbage MQTT');
  });

  test('fail/publish-before-connect: the first packet must be CONNECT', async (t) => {
    const { l, stillServing } = await setup(t);
    const s = await tlsSocket(l, dev1);
    const closed = closedAfter(s);
    s.write(Buffer.from([0x30, 0x05, 0x00, 0x01, 0x61, 0x68, 0x69]));
    assert.ok((await closed) < 1_000);
    await stillServing('after PUBLISH before CONNECT');
  });

  test('fail/oversized-packet: a packet over the limit closes the connection before it is buffered', async (t) => {
    const { l, stillServing } = await setup(t);
    const big = await connect(t, l, { creds: dev1, chain: true, clientId: 'dev1-big', protocolVersion: 5 });
    const closed = new Promise<void>((r) => big.once('close', () => r()));
    big.publish('devices/dev1/x', Buffer.alloc(10_000, 1), { qos: 0 });
    await closed;
    // Remaining Length announcing 200 MB: refused from the header alone.
    const s = await tlsSocket(l, dev1);
    const c = closedAfter(s);
    s.write(Buffer.concat([connectPacket('dev1-raw'), Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])]));
    assert.ok((await c) < 1_000);
    await stillServing('after oversized packets');
  });

  test('fail/unknown-protocol-level: CONNACK 1, then close', async (t) => {
    const { l } = await setup(t);
    const s = await tlsSocket(l, dev1);
    const packet = connectPacket('dev1');
    packet[8] = 6; // protocol level
    const data: Buffer[] = [];
    s.on('data', (d: Buffer) => data.push(d));
    const closed = closedAfter(s);
    s.write(packet);
    await closed;
    assert.deepEqual([...Buffer.concat(data)], [0x20, 0x02, 0x00, 0x01]);
  });

  test('ok/pipelined: packets sent right behind CONNECT wait for the decision and are then served', async (t) => {
    const { l } = await setup(t);
    const s = await tlsSocket(l, dev1);
    const data: Buffer[] = [];
    s.on('data', (d: Buffer) => data.push(d));
    // CONNECT, PINGREQ and DISCONNECT in one write.
    s.write(Buffer.concat([connectPacket('dev1-pipe'), Buffer.from([0xc0, 0x00, 0xe0, 0x00])]));
    await closedAfter(s, 3_000);
    assert.deepEqual([...Buffer.concat(data)], [0x20, 0x02, 0x00, 0x00, 0xd0, 0x00]);
  });

  test('ok/refused-then-closed: after a refusing CONNACK the server closes even if the client does not', async (t) => {
    const { l } = await setup(t);
    const stranger = await device((await tenantPki('nobody')).root, 'dev1');
    const s = await tlsSocket(l, stranger);
    const data: Buffer[] = [];
    s.on('data', (d: Buffer) => data.push(d));
    const ms = closedAfter(s, 5_000);
    s.write(connectPacket('dev1'));
    assert.ok((await ms) < 3_000);
    assert.deepEqual([...Buffer.concat(data)], [0x20, 0x02, 0x00, 0x05]);
  });
});
