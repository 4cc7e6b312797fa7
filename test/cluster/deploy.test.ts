/**
 * The ready-to-run configuration under deploy/: the compose file is valid for docker-compose, and
 * VerneMQ's lines register every webhook certgate answers, with the certificate forwarded.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { VERNEMQ_HOOKS } from '../../src/cluster/vernemq-hooks.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

function has(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('ok/compose-config: deploy/docker-compose.emqx.yml passes `docker-compose config -q`', { skip: has('docker-compose') ? false : 'docker-compose is not installed' }, async () => {
  const { stderr } = await promisify(execFile)('docker-compose', ['-f', 'deploy/docker-compose.emqx.yml', 'config', '-q'], { cwd: root, timeout: 60_000 });
  assert.doesNotMatch(stderr, /error/i, stderr);
  const services = (await promisify(execFile)('docker-compose', ['-f', 'deploy/docker-compose.emqx.yml', 'config', '--services'], { cwd: root, timeout: 60_000 })).stdout
    .trim()
    .split('\n')
    .sort();
  assert.deepEqual(services, ['certgate-api-1', 'certgate-api-2', 'certgate-emqx-sync', 'emqx1', 'emqx2', 'emqx3', 'postgres']);
});

test('ok/vernemq-conf: every certgate hook has an endpoint; the listener forwards the client certificate', async () => {
  const conf = await fs.readFile(`${root}/deploy/vernemq/vernemq.conf`, 'utf8');
  const settings = new Map(
    conf
      .split('\n')
      .filter((l) => l.trim() && !l.trim().startsWith('#'))
      .map((l) => l.split(/\s*=\s*/, 2) as [string, string]),
  );
  const hooks = [...settings].filter(([k]) => /^vmq_webhooks\.[^.]+\.hook$/.test(k)).map(([k, v]) => [k.split('.')[1]!, v] as const);
  assert.deepEqual(hooks.map(([, h]) => h).sort(), [...VERNEMQ_HOOKS].sort());
  for (const [name] of hooks) assert.match(settings.get(`vmq_webhooks.${name}.endpoint`) ?? '', /^http:\/\/vernemq:[^@]+@[^/]+\/verifier\/v1\/vernemq$/, name);
  assert.equal(settings.get('listener.ssl.forward_connection_opts'), 'on');
  assert.equal(settings.get('listener.ssl.require_certificate'), 'on');
  assert.equal(settings.get('allow_anonymous'), 'off');
});
