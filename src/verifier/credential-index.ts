/**
 * Which certificates are listed as device credentials, in memory, so a leaf never seen before
 * (the common case on a connection storm of rotated certificates) costs no database query.
 *
 * The index answers "certainly not a credential" or "maybe": a maybe is settled by the database
 * (through the trust cache). It holds 32-bit fingerprints of the credential ids in an
 * open-addressing table (8 bytes per id), so a million credentials take 8 MiB; a false "maybe"
 * (one in ~4 billion per probe) only costs the query the index otherwise saves.
 *
 * Freshness: ids are only ever added (a deleted credential leaves a harmless "maybe"). The whole
 * set is loaded on first use; change events that name credential ids add them; an event that
 * says a tenant's credentials changed without naming them reloads that tenant's ids, and a lost
 * notification connection reloads everything. Until a load has finished every answer is "maybe".
 */

/** 32 bits of a lowercase hex SHA-256, never 0 (0 marks an empty slot). */
function fingerprint(id: string): number {
  const fp = parseInt(id.slice(0, 8), 16) >>> 0;
  return Number.isNaN(fp) || fp === 0 ? 1 : fp;
}

/** Probe start: a multiplicative mix of the fingerprint, so a grown table needs nothing else. */
function start(fp: number): number {
  return Math.imul(fp, 0x9e3779b1) >>> 0;
}

/** An add-only set of 32-bit fingerprints with linear probing, kept at most half full. */
export class FingerprintSet {
  #slots: Uint32Array;
  #size = 0;

  constructor(capacity = 1024) {
    let n = 1024;
    while (n < capacity * 2) n *= 2;
    this.#slots = new Uint32Array(n);
  }

  get size(): number {
    return this.#size;
  }

  add(id: string): void {
    if (this.#insert(this.#slots, fingerprint(id)) && ++this.#size * 2 > this.#slots.length) {
      const old = this.#slots;
      this.#slots = new Uint32Array(old.length * 2);
      for (const v of old) if (v !== 0) this.#insert(this.#slots, v);
    }
  }

  has(id: string): boolean {
    const fp = fingerprint(id);
    const slots = this.#slots;
    const mask = slots.length - 1;
    for (let i = start(fp) & mask; ; i = (i + 1) & mask) {
      const v = slots[i]!;
      if (v === fp) return true;
      if (v === 0) return false;
    }
  }

  /** Stores the fingerprint; false when it was there already. */
  #insert(slots: Uint32Array, fp: number): boolean {
    const mask = slots.length - 1;
    for (let i = start(fp) & mask; ; i = (i + 1) & mask) {
      const v = slots[i]!;
      if (v === fp) return false;
      if (v === 0) {
        slots[i] = fp;
        return true;
      }
    }
  }
}

export type CredentialIdLoader = (after: string, limit: number, tenantId?: string) => Promise<string[]>;

const PAGE = 20_000;
const RETRY_MS = 5_000;

export function createCredentialIndex(load: CredentialIdLoader, opts: { onError?: (err: unknown) => void } = {}) {
  /** The complete index, once a full load has finished. */
  let set: FingerprintSet | undefined;
  /** Sets a full load is still filling: whatever is announced meanwhile goes into them too. */
  const filling = new Set<FingerprintSet>();
  /** Loads that may add ids the index lacks; while any runs, every answer is "maybe". */
  let pending = 0;
  /** The epoch of the full load in progress; a reset or a failure starts a new epoch. */
  let loadingEpoch = -1;
  let failedAt = -Infinity;
  let epoch = 0;
  /** Tenants being reloaded, and whether another change arrived during the reload. */
  const tenantLoads = new Map<string, { again: boolean }>();

  async function fill(targets: FingerprintSet[], tenantId?: string): Promise<void> {
    let after = '';
    for (;;) {
      const ids = await load(after, PAGE, tenantId);
      for (const id of ids) for (const t of targets) t.add(id);
      if (ids.length < PAGE) return;
      after = ids[ids.length - 1]!;
    }
  }

  function failed(err: unknown): void {
    // An incomplete index could wrongly answer "not a credential": drop it and load again later.
    set = undefined;
    epoch++;
    failedAt = Date.now();
    opts.onError?.(err);
  }

  function loadAll(): void {
    const myEpoch = ++epoch;
    const next = new FingerprintSet();
    filling.add(next);
    loadingEpoch = myEpoch;
    pending++;
    void fill([next])
      .then(() => {
        if (myEpoch === epoch) set = next;
      })
      .catch((err) => {
        if (myEpoch === epoch) failed(err);
      })
      .finally(() => {
        filling.delete(next);
        pending--;
        if (loadingEpoch === myEpoch) loadingEpoch = -1;
      });
  }

  function reloadTenant(tenantId: string): void {
    const running = tenantLoads.get(tenantId);
    if (running) {
      running.again = true;
      return;
    }
    const state = { again: false };
    tenantLoads.set(tenantId, state);
    pending++;
    const run = async (): Promise<void> => {
      do {
        state.again = false;
        const targets = [...(set ? [set] : []), ...filling];
        if (targets.length) await fill(targets, tenantId);
      } while (state.again);
    };
    const myEpoch = epoch;
    void run()
      .catch((err) => {
        if (myEpoch === epoch) failed(err);
      })
      .finally(() => {
        tenantLoads.delete(tenantId);
        pending--;
      });
  }

  return {
    /** False only when the id is certainly not a device credential. */
    mayContain(id: string): boolean {
      if (!set) {
        if (loadingEpoch !== epoch && Date.now() - failedAt >= RETRY_MS) loadAll();
        return true;
      }
      if (pending > 0) return true;
      return set.has(id);
    },

    /** Credential ids that now exist (this process wrote them, or an event named them). */
    add(ids: readonly string[]): void {
      for (const id of ids) {
        set?.add(id);
        for (const f of filling) f.add(id);
      }
    },

    /** Some credentials of the tenant changed, which ones is not known. */
    tenantChanged(tenantId: string): void {
      if (set || filling.size) reloadTenant(tenantId);
    },

    /** A notification may have been missed: nothing known can be trusted, load everything again. */
    reset(): void {
      set = undefined;
      failedAt = -Infinity;
      epoch++;
    },

    /** True when a complete index answers (no load in progress). */
    get ready(): boolean {
      return set !== undefined && pending === 0;
    },

    get size(): number {
      return set?.size ?? 0;
    },
  };
}
export type CredentialIndex = ReturnType<typeof createCredentialIndex>;
