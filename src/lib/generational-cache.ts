/**
 * A bounded cache with approximately least-recently-used eviction, for the verifier's per-request
 * caches: two plain Maps, the newer taking writes until it holds half the capacity, then replacing
 * the older one (whose entries are dropped). A hit in the older Map moves the entry to the newer.
 * Two Map operations per lookup, against a dozen scattered array accesses in a full LRU list,
 * which matters on a path that misses on every new certificate.
 */
export class GenerationalCache<K, V> {
  #newer = new Map<K, V>();
  #older = new Map<K, V>();
  readonly #half: number;

  constructor(maxEntries: number) {
    this.#half = Math.max(1, Math.ceil(maxEntries / 2));
  }

  get(key: K): V | undefined {
    const v = this.#newer.get(key);
    if (v !== undefined) return v;
    const old = this.#older.get(key);
    if (old !== undefined) {
      this.#older.delete(key);
      this.#put(key, old);
    }
    return old;
  }

  set(key: K, value: V): void {
    this.#put(key, value);
  }

  delete(key: K): void {
    this.#newer.delete(key);
    this.#older.delete(key);
  }

  clear(): void {
    this.#newer = new Map();
    this.#older = new Map();
  }

  get size(): number {
    return this.#newer.size + this.#older.size;
  }

  #put(key: K, value: V): void {
    if (this.#newer.size >= this.#half && !this.#newer.has(key)) {
      this.#older = this.#newer;
      this.#newer = new Map();
    }
    this.#newer.set(key, value);
  }
}
