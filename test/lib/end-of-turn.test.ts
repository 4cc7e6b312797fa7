/** `endOfTurn`: answers decided in one turn of the event loop are released together, after it. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { endOfTurn } from '../../src/lib/end-of-turn.js';

test('callers of one turn share one release at the end of that turn; a later turn gets its own', async () => {
  const released: string[] = [];
  const first = endOfTurn();
  assert.equal(endOfTurn(), first, 'one promise for the whole turn');
  void first.then(() => released.push('a'));
  void endOfTurn().then(() => released.push('b'));
  // Microtasks of this turn run first: nothing is released yet.
  await Promise.resolve();
  await Promise.resolve();
  assert.deepEqual(released, []);
  await first;
  await Promise.resolve();
  assert.deepEqual(released, ['a', 'b']);
  const later = endOfTurn();
  assert.notEqual(later, first, 'a later turn waits for its own end');
  await later;
});
