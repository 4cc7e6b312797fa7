/**
 * What an operator sees when a start cannot go on: one line on stderr naming the setting to
 * change, no stack, a non-zero exit status, and no secrets (a busy port, a bad DATABASE_URL, a
 * data folder another certgate holds, unusable TLS files, a standalone listener's VERIFIER_URL or
 * VERIFIER_TOKEN the API refuses). Generated secrets are printed once the service is up, removed
 * again when the start fails after making them, and `certgate reset-secrets` makes new ones.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { createTestDatabase } from '../helpers/database.js';
import { api, freePort, startService, until } from '../helpers/service.js';
import { cleanEnv, runToEnd, type Finished } from './run.js';

/** One line on stderr, naming the setting; nothing else on stderr, no stack, status 1. */
function assertOneLine(r: Finished, pattern: RegExp): void {
  assert.equal(r.code, 1, `exit status 1:\n${r.stderr}\n${r.stdout}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr:\n${r.stderr}`);
  assert.match(lines[0]!, /^certgate cannot start: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr + r.stdout, /\n\s+at .+:\d+:\d+/, 'no stack');
  assert.doesNotMatch(r.stdout, /password|VERIFIER_TOKEN\)/, 'no secrets printed');
}

async function tempDir(t: TestContext, prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  await fs.chmod(dir, 0o755);
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A port something else listens on, as mosquitto holds 8883 or ThingsBoard 8080. */
async function busyPort(t: TestContext): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as net.AddressInfo).port;
}

const login = (user: string, password: string) => `${user}:${password}`;

/** The secrets a start or `reset-secrets` printed. */
function printedSecrets(out: string): { password?: string; token?: string } {
  return {
    password: /management\/admin\s+password: (\S+)/.exec(out)?.[1],
    token: /verifier token \(VERIFIER_TOKEN\): (\S+)/.exec(out)?.[1],
  };
}

/** The verifier accepts the token when it gets past the token check to the body (400), not 401. */
async function verifierAccepts(baseUrl: string, token: string): Promise<boolean> {
  const res = await fetch(`${baseUrl}/verifier/v1/authenticate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: '{}',
  });
  await res.arrayBuffer();
  assert.ok(res.status === 400 || res.status === 401, `400 or 401, not ${res.status}`);
  return res.status === 400;
}

describe('start errors', () => {
  test('a busy MQTT port: one line naming MQTT_TLS_PORT, before anything starts', { timeout: 120_000 }, async (t) => {
    const dir = await tempDir(t, 'certgate-busy-');
    const port = await busyPort(t);
    const dataDir = path.join(dir, '.data');
    const r = await runToEnd(['npm-start'], cleanEnv({ DATA_DIR: dataDir, HTTP_PORT: String(await freePort()), MQTT_TLS_PORT: String(port) }));
    assertOneLine(r, new RegExp(`port ${port} is in use: set MQTT_TLS_PORT to a free port$`));
    await assert.rejects(fs.access(dataDir), 'no database was started');
  });

  test('a busy HTTP port: one line naming HTTP_PORT (certgate api)', { timeout: 120_000 }, async (t) => {
    const dir = await tempDir(t, 'certgate-busy-');
    const port = await busyPort(t);
    const r = await runToEnd(['api'], cleanEnv({ DATA_DIR: path.join(dir, '.data'), HTTP_PORT: String(port) }));
    assertOneLine(r, new RegExp(`port ${port} is in use: set HTTP_PORT to a free port$`));
  });

  test('a DATABASE_URL nothing answers at, or with a wrong password: one line naming DATABASE_URL', { timeout: 120_000 }, async (t) => {
    const dir = await tempDir(t, 'certgate-db-');
    const base = { DATA_DIR: path.join(dir, '.data'), HTTP_PORT: String(await freePort()), MQTT_TLS_PORT: String(await freePort()) };
    const refused = await runToEnd(['npm-start'], cleanEnv({ ...base, DATABASE_URL: `postgresql://certgate:secret@127.0.0.1:${await freePort()}/certgate` }));
    assertOneLine(refused, /cannot use the database at 127\.0\.0\.1:\d+\/certgate \(nothing accepts connections there\): set DATABASE_URL/);
    assert.doesNotMatch(refused.stderr, /secret/, 'the password is not shown');

    const db = await createTestDatabase();
    t.after(() => db.drop());
    const wrong = new URL(db.url);
    wrong.password = 'not-the-password';
    const denied = await runToEnd(['npm-start'], cleanEnv({ ...base, DATABASE_URL: wrong.toString() }));
    assertOneLine(denied, /\(the user name or password is wrong\): set DATABASE_URL/);
  });

  test('unreadable MQTT_TLS_CERT: one line; the secrets made before it are dropped and shown by the next start', { timeout: 240_000 }, async (t) => {
    const dir = await tempDir(t, 'certgate-secrets-');
    const db = await createTestDatabase();
    t.after(() => db.drop());
    const failed = await runToEnd(
      ['npm-start'],
      cleanEnv({
        DATABASE_URL: db.url,
        DATA_DIR: path.join(dir, '.data'),
        HTTP_PORT: String(await freePort()),
        MQTT_TLS_PORT: String(await freePort()),
        MQTT_TLS_CERT: path.join(dir, 'missing.crt'),
        MQTT_TLS_KEY: path.join(dir, 'missing.key'),
        MQTT_WORKERS: '1',
      }),
    );
    assertOneLine(failed, /cannot use MQTT_TLS_CERT and MQTT_TLS_KEY \(.*\): set them to a readable PEM certificate/);

    // The next start makes new secrets and prints them once it listens, after its last log line.
    const service = await startService({ env: { DATABASE_URL: db.url, MQTT_WORKERS: '1' }, dataDir: path.join(dir, '.data2') });
    t.after(() => service.stop());
    await until(() => /VERIFIER_TOKEN\): \S+\n/.test(service.output()), 10_000, 'the printed secrets');
    const out = service.output();
    assert.ok(out.indexOf("REST API listening") < out.indexOf("generated these secrets"), `secrets come after the service is up:\n${out}`);
    const { password, token } = printedSecrets(out);
    assert.ok(password && token);
    assert.equal((await api(service.httpUrl, 'GET', '/tenant/tenants', login('management/admin', password))).status, 200);
    assert.ok(await verifierAccepts(service.httpUrl, token));
  });

  test('a data folder another certgate holds: one line naming DATA_DIR; Ctrl-C then stops the first without warnings', { timeout: 240_000 }, async (t) => {
    const dir = await tempDir(t, 'certgate-held-');
    const dataDir = path.join(dir, '.data');
    const first = await startService({ dataDir, env: { MANAGEMENT_ADMIN_PASSWORD: 'held-folder-pass', VERIFIER_TOKEN: 'held-folder-verifier-token', MQTT_WORKERS: '1' } });
    t.after(() => first.stop());
    const second = await runToEnd(['npm-start'], cleanEnv({ DATA_DIR: dataDir, HTTP_PORT: String(await freePort()), MQTT_TLS_PORT: String(await freePort()) }));
    assertOneLine(second, new RegExp(`the data folder ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by another running certgate .*: stop that one, or set DATA_DIR to another folder$`));

    // A terminal's Ctrl-C signals the whole foreground group: certgate and its PostgreSQL.
    process.kill(-first.pid, 'SIGINT');
    await until(() => /"signal":"SIGINT"/.test(first.output()), 20_000, 'the shutdown');
    await first.stop();
    assert.doesNotMatch(first.output(), /change feed connection lost/);
    assert.doesNotMatch(first.output(), /"level":(40|50|60)/, 'no warning or error while stopping');
  });
});

describe('the verifier token of a standalone listener', () => {
  test('checked at start: a refused token or a URL without certgate stops it in one line; the right one starts it', { timeout: 240_000 }, async (t) => {
    const db = await createTestDatabase();
    t.after(() => db.drop());
    const token = 'apart-verifier-token-0123456789';
    const apiService = await startService({ mode: 'api', env: { DATABASE_URL: db.url, VERIFIER_TOKEN: token, MANAGEMENT_ADMIN_PASSWORD: 'apart-admin-pass' } });
    t.after(() => apiService.stop());
    const dir = await tempDir(t, 'certgate-apart-');
    const listenerEnv = (extra: Record<string, string>) =>
      cleanEnv({ DATA_DIR: path.join(dir, '.data'), MQTT_TLS_PORT: String(0), MQTT_WORKERS: '1', ...extra });

    const wrong = await runToEnd(['mqtt'], listenerEnv({ VERIFIER_URL: apiService.httpUrl, VERIFIER_TOKEN: 'not-the-verifier-token-at-all' }));
    assertOneLine(wrong, /the verifier refused VERIFIER_TOKEN \(401\): set VERIFIER_TOKEN to the API's token/);

    const missing = await runToEnd(['mqtt'], listenerEnv({ VERIFIER_URL: apiService.httpUrl }));
    assertOneLine(missing, /set VERIFIER_TOKEN to the token the API printed/);

    // Something else answers at the URL (a web server's 404).
    const other = http.createServer((_req, res) => res.writeHead(404).end('not found'));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => other.close(() => resolve())));
    const otherUrl = `http://127.0.0.1:${(other.address() as net.AddressInfo).port}`;
    const notCertgate = await runToEnd(['mqtt'], listenerEnv({ VERIFIER_URL: otherUrl, VERIFIER_TOKEN: token }));
    assertOneLine(notCertgate, /is no certgate verifier \(it answered 404\): set VERIFIER_URL to the certgate API's base URL/);

    // A server error that is not certgate's (501 from some other service), and a 200 that is not the verifier's.
    for (const [status, answer] of [[501, 'not implemented'], [200, '{"ok":true}']] as const) {
      const server = http.createServer((_req, res) => res.writeHead(status, { 'content-type': 'application/json' }).end(answer));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
      const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
      const refused = await runToEnd(['mqtt'], listenerEnv({ VERIFIER_URL: url, VERIFIER_TOKEN: token }));
      assertOneLine(refused, new RegExp(`is no certgate verifier \\(it answered ${status}\\): set VERIFIER_URL`));
    }

    const listener = await startService({ mode: 'mqtt', dataDir: path.join(dir, '.data-ok'), env: { VERIFIER_URL: apiService.httpUrl, VERIFIER_TOKEN: token, DATABASE_URL: db.url, MQTT_WORKERS: '1' } });
    t.after(() => listener.stop());
    assert.ok(listener.mqttPort > 0);
    // The listeners' token checks, refused or accepted, are no errors in the API's log.
    assert.doesNotMatch(apiService.output(), /verifier\/v1/, 'token checks are logged at debug');
  });
});

describe('certgate reset-secrets', () => {
  test('a new admin password works at once; a new verifier token after a restart; a set variable is left alone', { timeout: 300_000 }, async (t) => {
    const db = await createTestDatabase();
    t.after(() => db.drop());
    const dir = await tempDir(t, 'certgate-reset-');
    let service = await startService({ mode: 'api', env: { DATABASE_URL: db.url }, dataDir: path.join(dir, 'a') });
    t.after(() => service.stop());
    await until(() => /VERIFIER_TOKEN\): \S+\n/.test(service.output()), 10_000, 'the printed secrets');
    const first = printedSecrets(service.output());

    const env = cleanEnv({ DATABASE_URL: db.url, DATA_DIR: path.join(dir, 'reset') });
    const admin = await runToEnd(['reset-secrets', '--admin-password'], env);
    assert.equal(admin.code, 0, admin.stderr);
    const reset = printedSecrets(admin.stdout);
    assert.ok(reset.password && !reset.token, `only the password:\n${admin.stdout}`);
    assert.equal((await api(service.httpUrl, 'GET', '/tenant/tenants', login('management/admin', reset.password))).status, 200, 'the new password works at once');
    assert.equal((await api(service.httpUrl, 'GET', '/tenant/tenants', login('management/admin', first.password!))).status, 401, 'the old one no longer');

    const tokenRun = await runToEnd(['reset-secrets', '--verifier-token'], env);
    assert.equal(tokenRun.code, 0, tokenRun.stderr);
    const { token } = printedSecrets(tokenRun.stdout);
    assert.ok(token);
    assert.match(tokenRun.stderr, /restart certgate to use the new verifier token/);
    await service.stop();
    service = await startService({ mode: 'api', env: { DATABASE_URL: db.url }, dataDir: path.join(dir, 'b') });
    assert.doesNotMatch(service.output(), /generated these secrets/, 'nothing is generated on a later start');
    assert.ok(await verifierAccepts(service.httpUrl, token), 'the new token after the restart');
    assert.equal(await verifierAccepts(service.httpUrl, first.token!), false, 'the old token no longer');

    const pinned = await runToEnd(['reset-secrets'], { ...env, VERIFIER_TOKEN: 'a-token-set-in-the-environment', MANAGEMENT_ADMIN_PASSWORD: 'set-in-the-env' });
    assert.equal(pinned.code, 1);
    assert.match(pinned.stderr, /MANAGEMENT_ADMIN_PASSWORD is set .*change that variable instead/);
    assert.match(pinned.stderr, /VERIFIER_TOKEN is set .*change that variable instead/);
    assert.doesNotMatch(pinned.stdout, /password:|VERIFIER_TOKEN\):/);

    // Only the password set: the note on stderr, the new token alone on stdout.
    const halfPinned = await runToEnd(['reset-secrets'], { ...env, MANAGEMENT_ADMIN_PASSWORD: 'set-in-the-env' });
    assert.equal(halfPinned.code, 0, halfPinned.stderr);
    assert.match(halfPinned.stderr, /^certgate reset-secrets: MANAGEMENT_ADMIN_PASSWORD is set .*\ncertgate reset-secrets: restart certgate/);
    assert.ok(printedSecrets(halfPinned.stdout).token);
    assert.doesNotMatch(halfPinned.stdout, /MANAGEMENT_ADMIN_PASSWORD|restart|password:/);
  });

  test('a data folder without a certgate database is refused, and no database is made there', { timeout: 60_000 }, async (t) => {
    const dir = await tempDir(t, 'certgate-reset-empty-');
    const r = await runToEnd(['reset-secrets'], cleanEnv({ DATA_DIR: dir }));
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `certgate reset-secrets: ${dir} holds no certgate database: set DATA_DIR to the data folder of the certgate whose secrets to reset, or DATABASE_URL to its database\n`);
    assert.equal(r.stdout, '');
    assert.deepEqual(await fs.readdir(dir), []);
  });
});
