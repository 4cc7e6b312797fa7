/**
 * `CERTGATE_WITHOUT`, the measurement switch: the names it takes, `all`, and a process whose value
 * names an unknown mechanism stops when the switch is read, at start.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MECHANISMS, parseWithout } from '../../src/lib/without.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('names are read comma-separated, blanks ignored; all names every mechanism; none is empty', () => {
  assert.deepEqual([...parseWithout(' decision-cache, credential-index ,')], ['decision-cache', 'credential-index']);
  assert.deepEqual([...parseWithout('all')], [...MECHANISMS]);
  assert.equal(parseWithout(undefined).size, 0);
  assert.equal(parseWithout('').size, 0);
});

test('an unknown name is refused with the names known, under the setting that carried it', () => {
  assert.throws(() => parseWithout('decision-cache,decision-cahce'), {
    message: /^CERTGATE_WITHOUT: unknown mechanism "decision-cahce"; known: all, decision-cache, credential-index$/,
  });
  assert.throws(() => parseWithout('everything', 'BENCH_WITHOUT'), { message: /^BENCH_WITHOUT: unknown mechanism "everything"/ });
});

test('a process started with an unknown name stops as it loads the verifier', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', '-e', "await import('./src/verifier/verifier-service.ts')"], {
    cwd: root,
    env: { ...process.env, CERTGATE_WITHOUT: 'decision-cache,nothing' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.notEqual(code, 0);
  assert.match(stderr, /CERTGATE_WITHOUT: unknown mechanism "nothing"/);
});
