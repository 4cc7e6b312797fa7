/**
 * certgate's log as an operator reads it: one line per HTTP request and one per MQTT connection
 * attempt at info, with the fields one filters on (tenant, device, client id, result, reason, time
 * taken) and ISO 8601 times; JSON lines when stdout is not a terminal, readable lines on one; a
 * database outage logged once per burst without stacks, not once per failed request.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { createBurstLogger } from '../../src/lib/logger.js';
import { createTestDatabase } from '../helpers/database.js';
import { connectDevice, refusedWith } from '../helpers/mqtt-client.js';
import { makeLeaf, makeRoot } from '../helpers/pki-fixtures.js';
import { api, apiOk, REPO, startService, until, type Service } from '../helpers/service.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const MGMT = 'management/admin:logs-admin-pass';

/** A TCP relay to the test PostgreSQL that the test can cut and restore: a database outage. */
async function relay(t: TestContext, target: URL): Promise<{ url: string; cut(): Promise<void>; restore(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const url = new URL(target);
  url.host = `127.0.0.1:${port}`;
  return {
    url: url.toString(),
    async cut() {
      // close() waits for open connections: they are ended right after it stops the accepting.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
    async restore() {
      await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    },
  };
}

interface Line {
  level: number;
  time: string;
  msg: string;
  [field: string]: unknown;
}

/** The JSON lines the service wrote after `from` characters of its output. */
function linesOf(service: Service, from = 0): Line[] {
  return service
    .output()
    .slice(from)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);
}

describe('logs', () => {
  test('one line per request and per MQTT connect, with the fields to filter on; an outage once per burst, without stacks', { timeout: 240_000 }, async (t) => {
    const db = await createTestDatabase();
    t.after(() => db.drop());
    const link = await relay(t, new URL(db.url));
    const service = await startService({ env: { DATABASE_URL: link.url, MANAGEMENT_ADMIN_PASSWORD: 'logs-admin-pass', MQTT_WORKERS: '1' } });
    t.after(() => service.stop());
    const http = service.httpUrl;

    // Every line is JSON (stdout is no terminal here) with an ISO time.
    const startup = linesOf(service);
    assert.ok(startup.length > 0);
    for (const l of startup) assert.match(l.time, ISO);
    // Where the API listens: certgate's one line, not Fastify's one per interface.
    assert.deepEqual(startup.filter((l) => /listening/i.test(l.msg)).map((l) => l.msg), ['REST API listening']);

    // HTTP: one line per request, when it completes.
    let mark = service.output().length;
    await apiOk(http, 'GET', '/tenant/tenants?pageSize=1', MGMT);
    await until(() => linesOf(service, mark).some((l) => l.msg === 'request'), 5_000, 'the request line');
    const requests = linesOf(service, mark).filter((l) => String(l.url ?? '').startsWith('/tenant/tenants'));
    assert.equal(requests.length, 1, JSON.stringify(requests));
    const [line] = requests;
    assert.deepEqual(
      [line!.level, line!.msg, line!.method, line!.url, line!.statusCode, line!.tenantId, line!.userName, typeof line!.responseTimeMs],
      [30, 'request', 'GET', '/tenant/tenants?pageSize=1', 200, 'management', 'admin', 'number'],
    );
    assert.match(line!.time, ISO);
    assert.ok(!linesOf(service).some((l) => l.msg === 'incoming request' || l.msg === 'request completed'));

    // MQTT: one line per CONNECT, allowed or refused.
    await apiOk(http, 'POST', '/tenant/tenants', MGMT, { id: 'logs', company: 'Logs', domain: 'logs.example.com', adminName: 'admin', adminPass: 'logs-tenant-pass' });
    const root = makeRoot({ subject: 'CN=Logs CA' });
    await apiOk(http, 'POST', '/tenant/tenants/logs/trusted-certificates', 'logs/admin:logs-tenant-pass', {
      status: 'ENABLED',
      autoRegistrationEnabled: true,
      certInPemFormat: root.pem,
    });
    const leaf = makeLeaf(root, { subject: 'CN=sensor-7' });
    const tls = { port: service.mqttPort, serverCa: await fs.readFile(service.serverCaPath), cert: leaf.pem, key: leaf.key.privateKeyPem };
    mark = service.output().length;
    (await connectDevice(t, { ...tls, clientId: 'sensor-7' })).end(true);
    assert.equal(await refusedWith(t, { ...tls, clientId: 'someone-else' }), 5);
    await until(() => linesOf(service, mark).filter((l) => l.clientId === 'someone-else').length > 0, 5_000, 'the refusal line');
    const allowed = linesOf(service, mark).filter((l) => l.clientId === 'sensor-7' && l.level >= 30);
    assert.equal(allowed.length, 1, JSON.stringify(allowed));
    assert.deepEqual(
      [allowed[0]!.msg, allowed[0]!.result, allowed[0]!.tenantId, allowed[0]!.deviceName, typeof allowed[0]!.deviceId, typeof allowed[0]!.responseTimeMs],
      ['MQTT authentication allowed', 'allow', 'logs', 'sensor-7', 'string', 'number'],
    );
    const refused = linesOf(service, mark).filter((l) => l.clientId === 'someone-else' && l.level >= 30);
    assert.equal(refused.length, 1, JSON.stringify(refused));
    assert.deepEqual([refused[0]!.result, refused[0]!.reason], ['deny', 'CLIENT_ID_MISMATCH']);

    // Clients going away: requests whose client closes the connection before the answer, and TLS
    // handshakes cut off, are one info line each per burst, without stacks.
    mark = service.output().length;
    const port = Number(new URL(http).port);
    const auth = Buffer.from(MGMT).toString('base64');
    for (let i = 0; i < 5; i++) {
      const socket = net.connect(port, '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write(`POST /tenant/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ${auth}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"id":`);
      await new Promise((resolve) => setTimeout(resolve, 200)); // headers read, the body awaited
      socket.destroy();
      const reset = net.connect(service.mqttPort, '127.0.0.1');
      await new Promise((resolve) => reset.once('connect', resolve));
      reset.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x01]));
      reset.resetAndDestroy();
    }
    await until(() => linesOf(service, mark).some((l) => l.msg === 'TLS handshake failed'), 5_000, 'the TLS line');
    await until(() => linesOf(service, mark).some((l) => l.msg === 'client closed the connection before the answer'), 5_000, 'the abort line');
    await new Promise((resolve) => setTimeout(resolve, 500));
    const gone = linesOf(service, mark).filter((l) => l.msg === 'client closed the connection before the answer');
    assert.deepEqual(gone.map((l) => [l.level, l.method, l.url]), [[30, 'POST', '/tenant/tenants']], 'once per burst');
    const handshakes = linesOf(service, mark).filter((l) => l.msg === 'TLS handshake failed');
    assert.equal(handshakes.length, 1, JSON.stringify(handshakes));
    assert.deepEqual([handshakes[0]!.level, handshakes[0]!.reason], [30, 'ECONNRESET']);
    assert.ok(!linesOf(service, mark).some((l) => l.msg === 'request' || l.level >= 40), 'no request line, nothing worse than info');
    assert.ok(!service.output().slice(mark).includes('"stack"'), 'no stacks');

    // The database goes away: 30 requests answered 503, logged once, no stacks.
    mark = service.output().length;
    await link.cut();
    const answers = await Promise.all(Array.from({ length: 30 }, () => api(http, 'GET', '/tenant/tenants/logs', 'logs/admin:wrong-password-here')));
    assert.ok(answers.every((a) => a.status === 503), JSON.stringify(answers.map((a) => a.status)));
    const during = linesOf(service, mark);
    const outage = during.filter((l) => l.level >= 40 && /unavailable/.test(l.msg));
    assert.equal(outage.length, 1, JSON.stringify(outage));
    assert.equal(outage[0]!.error, 'service/Unavailable');
    assert.ok(!service.output().slice(mark).includes(`"stack"`), `no stack traces:\n${service.output().slice(mark)}`);
    // Each condition (503s, the change feed, records waiting for the database) is one line, not one per request.
    const warnings = during.filter((l) => l.level >= 40).map((l) => l.msg);
    assert.deepEqual(warnings, [...new Set(warnings)], `each warning once:\n${JSON.stringify(during)}`);
    await link.restore();
    await until(async () => (await api(http, 'GET', '/ready')).status === 200, 30_000, 'the database back');
  });

  test('readable lines on a terminal (LOG_FORMAT=auto), JSON otherwise; LOG_FORMAT forces either', async () => {
    const run = promisify(execFile);
    const emit = async (format: string, terminal: boolean) =>
      (
        await run(
          process.execPath,
          [
            '--import',
            'tsx',
            '-e',
            `import('./src/lib/logger.ts').then((m) => m.createLogger({ LOG_LEVEL: 'info', LOG_FORMAT: '${format}' }, ${terminal}).info({ tenantId: 'acme', deviceName: 'sensor-1' }, 'MQTT authentication allowed'))`,
          ],
          { cwd: REPO },
        )
      ).stdout;
    const pretty = await emit('auto', true);
    assert.doesNotMatch(pretty, /^\{/);
    assert.match(pretty, /INFO.*MQTT authentication allowed.*tenantId.*acme/s);
    const json = JSON.parse(await emit('auto', false)) as Line;
    assert.equal(json.msg, 'MQTT authentication allowed');
    assert.equal(json.tenantId, 'acme');
    assert.match(json.time, ISO);
    assert.doesNotMatch(await emit('pretty', false), /^\{/);
    assert.match(await emit('json', true), /^\{/);
  });

  test('a readable request line says what happened in its message; Fastify\'s own listen lines are left out', async () => {
    const run = promisify(execFile);
    const emit = async (call: string) =>
      (
        await run(
          process.execPath,
          ['--import', 'tsx', '-e', `import('./src/lib/logger.ts').then((m) => { const log = m.createLogger({ LOG_LEVEL: 'info', LOG_FORMAT: 'pretty' }, false); ${call}; })`],
          { cwd: REPO },
        )
      ).stdout;
    const request = await emit(
      `log.info({ method: 'POST', url: '/verifier/v1/authenticate', statusCode: 200, responseTimeMs: 4.1, tenantId: 'acme', deviceName: 'd1', result: 'allow' }, 'request')`,
    );
    assert.match(request, /INFO: POST \/verifier\/v1\/authenticate 200 4\.1ms tenant=acme device=d1 result=allow/);
    assert.doesNotMatch(request, /"url"|"statusCode"|"responseTimeMs"/, 'not repeated after the message');
    const mqtt = await emit(`log.info({ clientId: 'd1', responseTimeMs: 2.5 }, 'MQTT authentication allowed')`);
    assert.match(mqtt, /INFO: MQTT authentication allowed \(2\.5ms\)/);
    assert.equal(await emit(`log.info('Server listening at http://127.0.0.1:8080')`), '');
  });

  test('a burst logger writes the first of a burst, then how many more there were', async () => {
    const written: Array<[object, string]> = [];
    const target = { warn: (o: object, m: string) => void written.push([o, m]), info: (o: object, m: string) => void written.push([o, m]) };
    const burst = createBurstLogger(target, 60_000);
    for (let i = 0; i < 50; i++) burst.warn('db', { i }, 'database unreachable');
    burst.warn('other', {}, 'something else');
    assert.deepEqual(written, [[{ i: 0 }, 'database unreachable'], [{}, 'something else']]);
    burst.flush();
    assert.deepEqual(written.at(-1), [{ repeated: 49 }, 'database unreachable (repeated)']);
    burst.warn('db', { i: 99 }, 'database unreachable');
    assert.deepEqual(written.at(-1), [{ i: 99 }, 'database unreachable'], 'a new burst is written again');
    burst.flush();
  });
});
