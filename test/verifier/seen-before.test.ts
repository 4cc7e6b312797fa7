/**
 * The decision cache's doorkeeper: a key is admitted the second time it is asked for; the cache
 * of parsed leaves follows it.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { SeenBefore } from '../../src/verifier/seen-before.js';
import { createTrustCache } from '../../src/verifier/trust-cache.js';
import type { VerifierRepository } from '../../src/verifier/verifier-repository.js';
import { makeLeaf, makeRoot } from '../helpers/pki-fixtures.js';

const digest = (s: string) => crypto.hash('sha256', s, 'base64');

test('a key is new once, then seen; other keys stay new', () => {
  const seen = new SeenBefore();
  const keys = Array.from({ length: 10_000 }, (_, i) => digest(`key-${i}`));
  assert.equal(keys.filter((k) => seen.check(k)).length, 0, 'every key is new the first time');
  // 10,000 keys in 262,144 slots: about 2 % share a slot with a later key and are pushed out;
  // asking again pushes out that later key in turn, so about 4 % are new once more. No more.
  const again = keys.filter((k) => seen.check(k)).length;
  assert.ok(again >= 9_500, `${again} of 10,000 seen the second time`);
  assert.equal(seen.check(digest('another')), false);
});

test('a full table forgets old keys instead of growing, and never mistakes a key for another', () => {
  const seen = new SeenBefore(6); // 64 slots
  const keys = Array.from({ length: 5_000 }, (_, i) => digest(`k${i}`));
  let falseHits = 0;
  for (const k of keys) if (seen.check(k)) falseHits++;
  assert.equal(falseHits, 0, 'a 30-bit tag per slot: distinct keys are not taken for each other');
  assert.equal(seen.check(keys[0]!), false, 'the first key was pushed out long ago');
  assert.equal(seen.check(keys[0]!), true);
  assert.throws(() => new SeenBefore(20), RangeError);
});

test('a parsed leaf is kept for the next time only when its chain came before; a CA always', () => {
  // Parsing touches no store: the repository is never asked.
  const cache = createTrustCache({} as VerifierRepository);
  const root = makeRoot({ subject: 'CN=Doorkeeper Root' });
  const leaf = makeLeaf(root, { subject: 'CN=doorkeeper-device' });
  assert.notEqual(cache.parse(leaf.pem, false), cache.parse(leaf.pem, false), 'a first-seen leaf is parsed and let go');
  const kept = cache.parse(leaf.pem, true);
  assert.equal(cache.parse(leaf.pem, false), kept, 'a leaf kept once is found again');
  assert.equal(cache.parse(root.pem, false), cache.parse(root.pem, false), 'a CA is kept whatever the caller says');
});
