/**
 * Live sessions by what can revoke them (a disabled or deleted CA, a revoked
 * serial, a disabled or deleted device, a suspended tenant), so a SessionChange finds its
 * sessions without scanning every connection.
 */
import type { SessionChange } from '../verifier/verifier-types.js';
import { normalizeSerial } from './peer-chain.js';

export interface SessionKeys {
  tenantId: string;
  deviceId: string;
  /**
   * Lowercase hex SHA-1 of the trusted certificate the verifier anchored the chain on and of every
   * certificate the client presented.
   */
  fingerprints: string[];
  /** Serials of the presented certificates (leaf and intermediates), lowercase hex, no leading zeros. */
  serials: string[];
}

const normFp = (fp: string): string => fp.replace(/:/g, '').toLowerCase();

export class SessionIndex<T> {
  private readonly keys = new Map<T, SessionKeys>();
  private readonly byTenant = new Map<string, Set<T>>();
  private readonly byDevice = new Map<string, Set<T>>();
  private readonly byFingerprint = new Map<string, Set<T>>();
  private readonly bySerial = new Map<string, Set<T>>();

  get size(): number {
    return this.keys.size;
  }

  add(item: T, keys: SessionKeys): void {
    this.remove(item);
    const k: SessionKeys = {
      tenantId: keys.tenantId,
      deviceId: keys.deviceId,
      fingerprints: [...new Set(keys.fingerprints.map(normFp))],
      serials: [...new Set(keys.serials.map(normalizeSerial))],
    };
    this.keys.set(item, k);
    put(this.byTenant, k.tenantId, item);
    put(this.byDevice, `${k.tenantId}\u0000${k.deviceId}`, item);
    for (const fp of k.fingerprints) put(this.byFingerprint, `${k.tenantId}\u0000${fp}`, item);
    for (const s of k.serials) put(this.bySerial, `${k.tenantId}\u0000${s}`, item);
  }

  remove(item: T): void {
    const k = this.keys.get(item);
    if (!k) return;
    this.keys.delete(item);
    drop(this.byTenant, k.tenantId, item);
    drop(this.byDevice, `${k.tenantId}\u0000${k.deviceId}`, item);
    for (const fp of k.fingerprints) drop(this.byFingerprint, `${k.tenantId}\u0000${fp}`, item);
    for (const s of k.serials) drop(this.bySerial, `${k.tenantId}\u0000${s}`, item);
  }

  /** The sessions a change must close. */
  match(change: SessionChange): T[] {
    switch (change.kind) {
      case 'tenant':
        return [...(this.byTenant.get(change.tenantId) ?? [])];
      case 'device':
        return [...(this.byDevice.get(`${change.tenantId}\u0000${change.deviceId}`) ?? [])];
      case 'trusted-certificate':
        return [...(this.byFingerprint.get(`${change.tenantId}\u0000${normFp(change.fingerprint)}`) ?? [])];
      case 'serial':
        return this.#bySerials(change.tenantId, [change.serialHex], change.issuerFingerprint);
      case 'serials':
        return this.#bySerials(change.tenantId, change.serialHexes, change.issuerFingerprint);
      default:
        return [];
    }
  }

  #bySerials(tenantId: string, serials: readonly string[], issuerFingerprint: string | undefined): T[] {
    const found = new Set<T>();
    for (const serial of serials) for (const item of this.bySerial.get(`${tenantId}\u0000${normalizeSerial(serial)}`) ?? []) found.add(item);
    if (!issuerFingerprint) return [...found]; // revoked for every CA of the tenant
    const issuer = normFp(issuerFingerprint);
    // The issuer is either the anchor or a certificate the client presented; matching on
    // either errs toward closing, and the verifier decides again when the device reconnects.
    return [...found].filter((item) => this.keys.get(item)!.fingerprints.includes(issuer));
  }

  keysOf(item: T): SessionKeys | undefined {
    return this.keys.get(item);
  }
}

function put<T>(map: Map<string, Set<T>>, key: string, item: T): void {
  let set = map.get(key);
  if (!set) {
    set = new Set();
    map.set(key, set);
  }
  set.add(item);
}

function drop<T>(map: Map<string, Set<T>>, key: string, item: T): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(item);
  if (set.size === 0) map.delete(key);
}
