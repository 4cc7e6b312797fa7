/**
 * The trust cache's parsed certificates: a CA is kept always, a leaf only when the caller asks
 * (a request whose decision is kept), so a chain decided on its own leaves nothing behind.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createTrustCache } from '../../src/verifier/trust-cache.js';
import type { VerifierRepository } from '../../src/verifier/verifier-repository.js';
import { makeLeaf, makeRoot } from '../helpers/pki-fixtures.js';

test('a parsed leaf is kept for the next time only when the caller asks; a CA always', () => {
  // Parsing touches no store: the repository is never asked.
  const cache = createTrustCache({} as VerifierRepository);
  const root = makeRoot({ subject: 'CN=Leaf Parse Root' });
  const leaf = makeLeaf(root, { subject: 'CN=leaf-parse-device' });
  assert.notEqual(cache.parse(leaf.pem, false), cache.parse(leaf.pem, false), 'a leaf not asked to be kept is parsed and let go');
  const kept = cache.parse(leaf.pem, true);
  assert.equal(cache.parse(leaf.pem, false), kept, 'a leaf kept once is found again');
  assert.equal(cache.parse(root.pem, false), cache.parse(root.pem, false), 'a CA is kept whatever the caller says');
});
