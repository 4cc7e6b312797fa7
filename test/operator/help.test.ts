/**
 * `certgate --help` lists every command, and `certgate <command> --help` prints that command's help
 * and starts nothing: the command ends on its own, with status 0, before its time is up, while a
 * started service would run until stopped.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cleanEnv, runToEnd } from './run.js';

// Settings that would make a started service fail loudly: a help that started one would show it.
const env = cleanEnv({ HTTP_PORT: '1', MQTT_TLS_PORT: '1', DATABASE_URL: 'postgresql://nobody:x@127.0.0.1:1/none' });

describe('certgate help', () => {
  test('certgate --help lists every command', async () => {
    const r = await runToEnd(['--help'], env);
    assert.equal(r.code, 0, r.stderr);
    for (const command of ['serve', 'api', 'mqtt', 'reset-secrets', 'certs', 'emqx', 'vernemq']) {
      assert.match(r.stdout, new RegExp(`^  ${command} +\\S`, 'm'), `${command} is listed`);
    }
  });

  const cases: Array<{ args: string[]; usage: RegExp }> = [
    { args: ['serve', '--help'], usage: /^Usage: certgate serve/ },
    { args: ['api', '--help'], usage: /^Usage: certgate api/ },
    { args: ['mqtt', '--help'], usage: /^Usage: certgate mqtt/ },
    { args: ['mqtt', '-h'], usage: /^Usage: certgate mqtt/ },
    { args: ['reset-secrets', '--help'], usage: /^Usage: certgate reset-secrets/ },
    { args: ['certs', '--help'], usage: /^Usage: certgate certs/ },
    { args: ['help', 'api'], usage: /^Usage: certgate api/ },
    { args: ['emqx', '--help'], usage: /^Usage: certgate emqx sync/ },
    { args: ['vernemq', 'sync', '--help'], usage: /^Usage: certgate vernemq sync/ },
    { args: ['npm-start', '--help'], usage: /^Usage: certgate serve/ },
    ...['ca', 'intermediate', 'server', 'device', 'pop'].map((sub) => ({ args: ['certs', sub, '--help'], usage: new RegExp(`^Usage: certgate certs ${sub}`) })),
  ];
  for (const { args, usage } of cases) {
    test(`certgate ${args.join(' ')} prints help and starts nothing`, async () => {
      const r = await runToEnd(args, env, 60_000);
      assert.equal(r.code, 0, `exit status 0:\n${r.stderr}`);
      assert.match(r.stdout, usage);
      assert.equal(r.stderr, '', 'nothing on stderr (no start, no error)');
      assert.doesNotMatch(r.stdout, /listening|cannot start|PostgreSQL started/);
    });
  }

  test('certgate mqtt --help says where sessions and retained messages are kept', async () => {
    const r = await runToEnd(['mqtt', '--help'], env, 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.replace(/\s+/g, ' '), /persistent sessions and retained messages are stored there as they change; without it they are kept in memory only/);
  });

  test('each service command lists the settings it reads, grouped as required or optional', async () => {
    const [serve, apiOnly, mqtt] = await Promise.all(['serve', 'api', 'mqtt'].map((c) => runToEnd([c, '--help'], env, 60_000)));
    const names = (text: string) => new Set([...text.matchAll(/^ {2}([A-Z][A-Z_]+(?:, [A-Z][A-Z_]+)*) {2,}/gm)].flatMap((m) => m[1]!.split(', ')));
    const common = ['DATABASE_URL', 'DATA_DIR', 'LOG_LEVEL', 'LOG_FORMAT'];
    const http = ['HTTP_HOST', 'HTTP_PORT', 'MANAGEMENT_ADMIN_PASSWORD', 'METRICS_TOKEN', 'METRICS_ENABLED', 'DOCS_ENABLED'];
    const listener = ['MQTT_TLS_HOST', 'MQTT_TLS_PORT', 'MQTT_TLS_CERT', 'MQTT_TLS_KEY', 'MQTT_WORKERS'];
    assert.deepEqual([...names(serve.stdout)].sort(), [...common, ...http, ...listener, 'VERIFIER_TOKEN'].sort());
    assert.deepEqual([...names(apiOnly.stdout)].sort(), [...common, ...http, 'VERIFIER_TOKEN'].sort());
    assert.deepEqual([...names(mqtt.stdout)].sort(), [...common, ...listener, 'VERIFIER_URL', 'VERIFIER_TOKEN'].sort());

    // The listener alone: two required settings, the rest optional, each named once.
    const [required, optional] = mqtt.stdout.split(/^Optional:$/m);
    assert.deepEqual([...names(required!.split(/^Required:$/m)[1]!)].sort(), ['VERIFIER_TOKEN', 'VERIFIER_URL']);
    assert.ok(names(optional!).has('DATABASE_URL'));
    assert.equal(mqtt.stdout.match(/^ {2}VERIFIER_TOKEN /gm)?.length, 1);
    assert.doesNotMatch(mqtt.stdout, /generated, printed once/);
    assert.match(mqtt.stdout.replace(/\s+/g, ' '), /It opens no HTTP port, so it has no \/metrics, \/health or \/docs/);
  });

  test('certgate emqx with an unknown command says so, then shows its help', async () => {
    const r = await runToEnd(['emqx', 'bogus'], env, 60_000);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^certgate emqx: unknown command "bogus" \(the command is sync\)\n\nUsage: certgate emqx sync/);
  });

  test('settings are environment variables: an argument to serve is refused before anything starts', async () => {
    const r = await runToEnd(['serve', '--port', '9000'], env, 60_000);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unexpected argument "--port"; settings are environment variables/);
  });
});
