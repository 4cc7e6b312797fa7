/**
 * Which keys came before: a fixed table of 32-bit tags indexed by the key, so a cache can keep
 * only what comes back. A storm of first connections then fills no cache with decisions that are
 * never asked for again (each kept one would live its full TTL on the heap, and the garbage
 * collector would pay for it on every request); a device that reconnects is cached from its
 * second connection on. The table holds no objects and never grows; a key pushed out by
 * another just counts as new once more.
 */
const SIXBITS = new Uint8Array(128);
'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.split('').forEach((c, i) => (SIXBITS[c.charCodeAt(0)] = i));
SIXBITS['-'.charCodeAt(0)] = 62; // base64url
SIXBITS['_'.charCodeAt(0)] = 63;

export class SeenBefore {
  readonly #tags: Uint32Array;
  readonly #sextets: number;

  /** `slotsLog2` 18: 262,144 slots in 1 MiB. */
  constructor(slotsLog2 = 18) {
    if (slotsLog2 < 6 || slotsLog2 > 24 || slotsLog2 % 6 !== 0) throw new RangeError('slotsLog2 must be 6, 12, 18 or 24');
    this.#tags = new Uint32Array(1 << slotsLog2);
    this.#sextets = slotsLog2 / 6;
  }

  /**
   * Whether `digest` (base64 or base64url of a cryptographic hash, at least 11 characters) was
   * recorded before; records it either way.
   */
  check(digest: string): boolean {
    const sextets = this.#sextets;
    let slot = 0;
    for (let i = 0; i < sextets; i++) slot = (slot << 6) | SIXBITS[digest.charCodeAt(i) & 127]!;
    let tag = 1; // never 0, the empty slot
    for (let i = sextets; i < sextets + 5; i++) tag = (tag << 6) | SIXBITS[digest.charCodeAt(i) & 127]!;
    tag >>>= 0;
    if (this.#tags[slot] === tag) return true;
    this.#tags[slot] = tag;
    return false;
  }
}
