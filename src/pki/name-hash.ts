import crypto from 'node:crypto';
import type { Name } from './names.js';

/**
 * A lookup key for a distinguished name: SHA-256 of its RFC 5280 7.1 comparison key, so an
 * issuer name finds the trusted certificates whose subject matches it under name comparison
 * rules, not only byte-identical encodings.
 */
export function nameHash(name: Name): string {
  return crypto.createHash('sha256').update(name.key).digest('hex');
}
