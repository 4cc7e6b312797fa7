/**
 * The README's "A device connected in five commands", run as written against a started certgate:
 * only the address of the API, the MQTT port and the server CA's path are this service's instead
 * of the defaults (localhost:8080, 8883, .data/tls/ca.crt).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { REPO } from './helpers/service.js';
import { serviceForFile, Shell } from './walkthroughs/harness.js';

async function fiveCommands(): Promise<string> {
  const readme = await fs.readFile(path.join(REPO, 'README.md'), 'utf8');
  const section = readme.split('\n## A device connected in five commands\n')[1]?.split('\n## ')[0];
  assert.ok(section, 'the README has the section');
  const block = /```sh\n([\s\S]*?)\n```/.exec(section)?.[1];
  assert.ok(block, 'with a sh block');
  const commands = block.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
  assert.equal(commands.length, 5, 'five commands');
  return block;
}

describe('README', () => {
  const env = serviceForFile();

  test('a device connected in five commands', async (t) => {
    const e = env();
    const block = (await fiveCommands())
      .replaceAll('http://localhost:8080', e.service.httpUrl)
      .replaceAll('-p 8883', `-p ${e.service.mqttPort}`)
      .replaceAll('.data/tls/ca.crt', e.service.serverCaPath);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-readme-'));
    const shell = new Shell(dir, { ...process.env, ...e.vars, PATH: `${e.npxShimDir}:${process.env.PATH}`, NO_COLOR: '1' });
    t.after(async () => {
      await shell.close();
      await fs.rm(dir, { recursive: true, force: true });
    });
    const { output, failed } = await shell.run(block);
    assert.deepEqual(failed, [], output);
    assert.match(output, /received CONNACK \(0\)/);
    assert.match(output, /"name":"sensor-1"/);
    assert.match(output, /"createdBy":"AUTO_REGISTRATION"/);
  });
});
