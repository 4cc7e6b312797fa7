/** `GenerationalCache`: bounded, keeps what is used, forgets the least recently used half at a time. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GenerationalCache } from '../../src/lib/generational-cache.js';

test('never holds more than its capacity, however many keys pass through', () => {
  const cache = new GenerationalCache<string, number>(100);
  for (let i = 0; i < 10_000; i++) {
    cache.set(`k${i}`, i);
    assert.ok(cache.size <= 100, `size ${cache.size} after ${i + 1} keys`);
  }
  // The newest keys are kept, the oldest are gone.
  assert.equal(cache.get('k9999'), 9999);
  assert.equal(cache.get('k0'), undefined);
});

test('a key read since the last turnover survives the next one; an unread one does not', () => {
  const cache = new GenerationalCache<string, string>(4);
  cache.set('a', 'A');
  cache.set('b', 'B');
  // The next key starts a new generation: a and b are now the older one.
  cache.set('c', 'C');
  assert.equal(cache.get('a'), 'A', 'moved to the newer generation');
  // The newer generation (c, a) is full: one more key drops the older one, which holds only b.
  cache.set('d', 'D');
  assert.equal(cache.get('b'), undefined);
  assert.equal(cache.get('a'), 'A');
  assert.equal(cache.get('c'), 'C');
  assert.equal(cache.get('d'), 'D');
});

test('keeps falsy values, replaces a value in place, and forgets on delete and clear', () => {
  const cache = new GenerationalCache<string, boolean | number>(10);
  cache.set('no', false);
  cache.set('zero', 0);
  assert.equal(cache.get('no'), false);
  assert.equal(cache.get('zero'), 0);
  cache.set('zero', 1);
  assert.equal(cache.get('zero'), 1);
  assert.equal(cache.size, 2);
  cache.delete('no');
  assert.equal(cache.get('no'), undefined);
  cache.clear();
  assert.equal(cache.size, 0);
  assert.equal(cache.get('zero'), undefined);
});
