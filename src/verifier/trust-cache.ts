import { LRUCache } from 'lru-cache';
import { parseCertificate, type ParsedCertificate } from '../pki/certificate.js';
import type { ChangeEvent } from '../db/change-feed.js';
import { createCredentialIndex } from './credential-index.js';
import { without } from '../lib/without.js';
import type { CredentialRef, DeviceRef, ProfileRef, TrustedRef, VerifierRepository } from './verifier-repository.js';

export interface TrustedEntry extends TrustedRef {
  cert: ParsedCertificate;
}

export interface TenantRevocations {
  /** serial (lowercase hex, no leading zeros) -> issuer fingerprints; "" = any CA of the tenant */
  bySerial: Map<string, Set<string>>;
  /**
   * `revokedCredentialKey` of every device credential revoked through the API. Matching by issuer
   * and serial, not only by fingerprint, keeps a re-encoded copy of a revoked certificate out
   * (an ECDSA signature stays valid with s replaced by n - s, which changes the SHA-256).
   */
  revokedCredentials: Set<string>;
}

export function revokedCredentialKey(issuer: string, serialHex: string): string {
  return `${issuer}\u0000${serialHex}`;
}

const NO_CREDENTIAL: Promise<CredentialRef | null> = Promise.resolve(null);

/**
 * In-memory views of what the verifier reads, filled on first use and dropped by change events
 * from PostgreSQL NOTIFY (so every process sees a change on its next request, without timers).
 * `generation` increases on every change that can alter a decision; cached decisions from an
 * older generation are void.
 */
export interface TrustCacheOptions {
  maxParsed?: number;
  maxParsedLeaves?: number;
  /** Devices kept, by name and by id (each). */
  maxDevices?: number;
  /** Devices of one tenant found in the database one by one before the rest are read at once. */
  preloadAfter?: number;
  /** Devices per page of such a read. */
  preloadPage?: number;
  /** Milliseconds since the epoch (tests pass their own). */
  now?: () => number;
  /** A background load failed (the credential index, a tenant's devices); requests carry on without it. */
  onError?: (err: unknown) => void;
}

/** A storm: this many devices of a tenant found one by one within `STORM_WINDOW_MS`. */
const STORM_WINDOW_MS = 60_000;
/** After a tenant too large for the cache, or a failed read, the next storm reads no sooner. */
const PRELOAD_RETRY_MS = 5 * 60_000;

/** Where reading a tenant's devices at once stands (see `noteFound`). */
interface TenantDevices {
  state: 'counting' | 'loading' | 'loaded';
  /** Devices found in the database one by one since `since`. */
  found: number;
  since: number;
  /** No read before this time. */
  notBefore: number;
  /** While loading: keys of devices changed meanwhile, which a page read before may show as they were. */
  changed?: Set<string>;
}


export function createTrustCache(repo: VerifierRepository, opts: TrustCacheOptions = {}) {
  let generation = 0;
  // Issuers come back in every chain below them. A leaf comes back only when its device
  // reconnects, mostly answered by the decision cache, and a storm of new leaves must not fill
  // the heap (a parse is ~6 KB): leaves get a small cache of their own, and only those the
  // caller asks to keep (see `parse`).
  const parsed = new LRUCache<string, ParsedCertificate>({ max: opts.maxParsed ?? 10_000 });
  const parsedLeaves = new LRUCache<string, ParsedCertificate>({ max: opts.maxParsedLeaves ?? 5_000 });
  const trustedBySubject = new Map<string, Promise<TrustedEntry[]>>();
  const tenantStatus = new Map<string, Promise<'ACTIVE' | 'SUSPENDED' | null>>();
  const profiles = new Map<string, Promise<ProfileRef[]>>();
  const revocations = new Map<string, Promise<TenantRevocations>>();
  const maxDevices = opts.maxDevices ?? 200_000;
  const preloadAfter = opts.preloadAfter ?? 1_000;
  const preloadPage = opts.preloadPage ?? 1_000;
  const now = opts.now ?? Date.now;
  const devicesByName = new LRUCache<string, Promise<DeviceRef | null>>({ max: maxDevices });
  const devicesById = new LRUCache<string, Promise<DeviceRef | null>>({ max: maxDevices });
  const nameKey = (d: Pick<DeviceRef, 'tenantId' | 'name'>) => `${d.tenantId}\u0000${d.name}`;
  const idKey = (d: Pick<DeviceRef, 'tenantId' | 'id'>) => `${d.tenantId}\u0000${d.id}`;
  const tenantDevices = new Map<string, TenantDevices>();

  /**
   * Counts a device found in the database by itself. When many devices of one tenant connect for
   * the first time within a minute (a broker restarted, a fleet rotated its certificates), the
   * rest are likely to follow: after `preloadAfter` of them the tenant's devices are read at once,
   * in pages over the unique index, ~2 µs each in PostgreSQL against a query each when looked up
   * one by one (without it, cold decisions on a 100,000-device tenant took 1.46 times as long as
   * on a 10-device one; see bench/RESULTS.md). Only a tenant whose devices all
   * fit in the cache is read, and once, until its devices are dropped as a whole. A device that is
   * not cached is still looked up, so a page cannot hide a device created meanwhile.
   */
  function noteFound(tenantId: string): void {
    const at = now();
    let t = tenantDevices.get(tenantId);
    if (!t) tenantDevices.set(tenantId, (t = { state: 'counting', found: 0, since: at, notBefore: 0 }));
    if (t.state !== 'counting' || at < t.notBefore) return;
    if (at - t.since > STORM_WINDOW_MS) {
      t.found = 0;
      t.since = at;
    }
    if (++t.found < preloadAfter) return;
    t.state = 'loading';
    t.changed = new Set();
    void preloadDevices(tenantId, t);
  }

  async function preloadDevices(tenantId: string, t: TenantDevices): Promise<void> {
    // Dropped meanwhile (the tenant's devices changed as a whole, or changes were missed): stop.
    const current = () => tenantDevices.get(tenantId) === t;
    const later = () => {
      t.state = 'counting';
      t.found = 0;
      t.notBefore = now() + PRELOAD_RETRY_MS;
    };
    try {
      if ((await repo.deviceCount(tenantId)) > maxDevices) {
        later();
        return;
      }
      for (let after = ''; current(); ) {
        const page = await repo.devicesOfTenant(tenantId, after, preloadPage);
        if (!current()) return;
        const changed = t.changed!;
        for (const d of page) {
          const byName = nameKey(d);
          const byId = idKey(d);
          // A device changed while the page was on its way may be shown as it was: skipped, it is
          // looked up by itself when asked for.
          if (changed.size && (changed.has(byName) || changed.has(byId))) continue;
          const found = Promise.resolve(d);
          // What the cache holds is as fresh as the page, or fresher (looked up since).
          if (!devicesByName.has(byName)) devicesByName.set(byName, found);
          if (!devicesById.has(byId)) devicesById.set(byId, found);
        }
        if (page.length < preloadPage) break;
        after = page[page.length - 1]!.name;
      }
      t.state = 'loaded';
    } catch (err) {
      later();
      opts.onError?.(err);
    } finally {
      t.changed = undefined;
    }
  }

  /**
   * Drops what the devices' change may have made stale. A device's credentials go with the device
   * (a delete publishes a credentials change as well); its pinned set is its own.
   */
  function devicesChanged(tenantId: string, devices: Array<{ id: string; name: string }> | undefined): void {
    if (!devices) {
      dropTenantEntries(devicesByName, tenantId);
      dropTenantEntries(devicesById, tenantId);
      tenantDevices.delete(tenantId);
      pinned.clear();
      credentials.clear();
      return;
    }
    const changed = tenantDevices.get(tenantId)?.changed;
    for (const d of devices) {
      const byName = nameKey({ tenantId, name: d.name });
      const byId = idKey({ tenantId, id: d.id });
      devicesByName.delete(byName);
      devicesById.delete(byId);
      pinned.delete(d.id);
      changed?.add(byName).add(byId);
    }
  }
  // Most leaves are not device credentials; the index says so without a query.
  const credentialIndex = createCredentialIndex((after, limit, tenantId) => repo.credentialIds(after, limit, tenantId), {
    onError: opts.onError,
  });
  // Measured without (lib/without.ts): every leaf is looked up in the database.
  const indexed = !without('credential-index');
  const credentials = new LRUCache<string, Promise<CredentialRef | null>>({ max: 200_000 });
  const pinned = new LRUCache<string, Promise<Set<string>>>({ max: 50_000 });

  /** Caches a promise; a failed load is forgotten so the next request retries the database. */
  function memo<K, V>(map: { get(k: K): Promise<V> | undefined; set(k: K, v: Promise<V>): unknown; delete(k: K): unknown }, key: K, load: () => Promise<V>): Promise<V> {
    const hit = map.get(key);
    if (hit) return hit;
    const p = load();
    map.set(key, p);
    p.catch(() => {
      if (map.get(key) === p) map.delete(key);
    });
    return p;
  }

  function toEntry(row: TrustedRef): TrustedEntry {
    const key = Buffer.from(row.certDer).toString('base64');
    let cert = parsed.get(key);
    if (!cert) {
      cert = parseCertificate(row.certDer);
      parsed.set(key, cert);
    }
    return { ...row, cert };
  }

  function dropTenantEntries<V extends object>(cache: LRUCache<string, V>, tenantId: string): void {
    const prefix = `${tenantId}\u0000`;
    for (const k of cache.keys()) if (k.startsWith(prefix)) cache.delete(k);
  }

  const api = {
    get generation() {
      return generation;
    },

    /**
     * Parses each distinct certificate once; input is PEM or base64 DER as presented. A leaf
     * (not a CA) is kept only with `keepLeaf`, for requests whose decision is kept as well: a
     * chain decided on its own (the explain endpoint, a recheck, an unreadable chain) leaves
     * nothing behind.
     */
    parse(input: string, keepLeaf: boolean): ParsedCertificate {
      const hit = parsed.get(input) ?? parsedLeaves.get(input);
      if (hit) return hit;
      const cert = parseCertificate(input);
      if (cert.basicConstraints?.ca === true) parsed.set(input, cert);
      else if (keepLeaf) parsedLeaves.set(input, cert);
      return cert;
    },

    trustedBySubjectHash(hash: string): Promise<TrustedEntry[]> {
      return memo(trustedBySubject, hash, async () => (await repo.trustedBySubjectHash([hash])).map(toEntry));
    },

    tenantStatus(tenantId: string) {
      return memo(tenantStatus, tenantId, async () => (await repo.tenantStatus(tenantId))?.status ?? null);
    },

    async profile(tenantId: string, profileId: string | null): Promise<ProfileRef | undefined> {
      const list = await memo(profiles, tenantId, () => repo.profiles(tenantId));
      return (profileId ? list.find((p) => p.id === profileId) : undefined) ?? list.find((p) => p.isDefault);
    },

    revocations(tenantId: string): Promise<TenantRevocations> {
      return memo(revocations, tenantId, async () => {
        const bySerial = new Map<string, Set<string>>();
        const [holds, revokedCredentials] = await Promise.all([repo.revocations(tenantId), repo.revokedCredentials(tenantId)]);
        for (const r of holds) {
          const set = bySerial.get(r.serialHex) ?? new Set<string>();
          set.add(r.issuerFingerprint);
          bySerial.set(r.serialHex, set);
        }
        return {
          bySerial,
          revokedCredentials: new Set(revokedCredentials.map((c) => revokedCredentialKey(c.issuer, c.serialNumber))),
        };
      });
    },

    deviceByName(tenantId: string, name: string) {
      return memo(devicesByName, nameKey({ tenantId, name }), async () => {
        const device = await repo.deviceByName(tenantId, name);
        if (device) noteFound(tenantId);
        return device;
      });
    },

    credential(credentialsId: string): Promise<CredentialRef | null> {
      if (indexed && !credentialIndex.mayContain(credentialsId)) return NO_CREDENTIAL;
      return memo(credentials, credentialsId, () => repo.credential(credentialsId));
    },

    /** Whether the id is known to be a device credential already (nothing to announce). */
    knowsCredential(credentialsId: string): boolean {
      return indexed && credentialIndex.ready && credentialIndex.mayContain(credentialsId);
    },

    deviceById(tenantId: string, id: string) {
      return memo(devicesById, idKey({ tenantId, id }), async () => {
        const device = await repo.deviceById(id);
        if (device) noteFound(device.tenantId);
        return device;
      });
    },

    pinnedCredentialIds(deviceId: string) {
      return memo(pinned, deviceId, () => repo.pinnedCredentialIds(deviceId));
    },

    apply(event: ChangeEvent): void {
      if (event.type === 'credentials-observed') {
        credentialIndex.add(event.credentialsIds);
        for (const id of event.credentialsIds) credentials.delete(id);
        return;
      }
      generation++;
      if (event.type !== 'invalidate') return;
      const { tenantId } = event;
      switch (event.what) {
        case 'tenant':
          tenantStatus.delete(tenantId);
          profiles.delete(tenantId);
          revocations.delete(tenantId);
          devicesChanged(tenantId, undefined);
          // A deleted tenant takes its credentials and trusted certificates with it.
          credentials.clear();
          pinned.clear();
          trustedBySubject.clear();
          break;
        case 'trusted-certificates':
          trustedBySubject.clear();
          break;
        case 'device-profiles':
          profiles.delete(tenantId);
          break;
        case 'devices':
          devicesChanged(tenantId, event.devices);
          break;
        case 'credentials':
          credentials.clear();
          pinned.clear();
          revocations.delete(tenantId);
          if (event.credentialsIds) credentialIndex.add(event.credentialsIds);
          else credentialIndex.tenantChanged(tenantId);
          break;
        case 'revocations':
          revocations.delete(tenantId);
          break;
      }
    },

    /** Changes were missed (see trust-state.ts): nothing cached can be trusted. */
    clear(): void {
      generation++;
      trustedBySubject.clear();
      tenantStatus.clear();
      profiles.clear();
      revocations.clear();
      devicesByName.clear();
      devicesById.clear();
      tenantDevices.clear();
      credentials.clear();
      pinned.clear();
      credentialIndex.reset();
    },
  };
  return api;
}
export type TrustCache = ReturnType<typeof createTrustCache>;
