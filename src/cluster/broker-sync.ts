/**
 * Keeps a clustered broker in step with certgate (`certgate emqx sync`, `certgate vernemq sync`):
 * the CA file of its TLS listener, and the kill switch. It follows the database's change feed:
 *
 * - the CA bundle is pushed at start, after the feed reconnects, and whenever the set of enabled
 *   trusted certificates may have changed (only when its bytes did);
 * - a session-drop change (tenant, device, trusted certificate, serial) is resolved to the
 *   tenant's devices it concerns, and the broker's live clients of those devices are kicked.
 *   Changes arriving together are handled in one pass (one listing of the broker's clients);
 * - after the feed reconnects (a notification may have been missed), every live client whose
 *   device or tenant is no longer active is kicked.
 *
 * Clients are matched by the tenant and device the verifier gave them at CONNECT (EMQX keeps them
 * as `client_attrs`, VerneMQ as mountpoint and username); the broker adapter lists and kicks.
 */
import type { ChangeEvent, ChangeFeed } from '../db/change-feed.js';
import type { SessionChange } from '../verifier/verifier-types.js';
import { buildCaBundle, type TrustedCertificateRow } from './cluster-service.js';

export interface LiveClient {
  clientId: string;
  tenantId?: string;
  deviceId?: string;
}

export interface BrokerAdapter {
  pushCaBundle(pem: string): Promise<void>;
  listClients(): Promise<LiveClient[]>;
  kick(client: LiveClient): Promise<void>;
}

export interface SyncTrustedCertificate extends TrustedCertificateRow {
  tenantId: string;
  subject: string;
  status: 'ENABLED' | 'DISABLED';
}

export interface SyncRepository {
  /** Every trusted certificate of every tenant, enabled or not. */
  trustedCertificates(): Promise<SyncTrustedCertificate[]>;
  /** Devices of the tenant holding a certificate issued by `issuer` (the issuer's subject). */
  devicesWithIssuer(tenantId: string, issuer: string): Promise<string[]>;
  /** Devices of the tenant holding a certificate with one of these serials (normalized hex), of `issuer` when given. */
  devicesWithSerials(tenantId: string, serialHexes: readonly string[], issuer?: string): Promise<string[]>;
  /** Whether the device exists, is ACTIVE, and its tenant is ACTIVE. */
  deviceActive(tenantId: string, deviceId: string): Promise<boolean>;
}

export interface BrokerSyncDeps {
  feed: Pick<ChangeFeed, 'subscribe' | 'onResync'>;
  broker: BrokerAdapter;
  repository: SyncRepository;
  log?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  /** How long changes are gathered before one pass; default 100 ms. */
  batchMs?: number;
  /** Wait before retrying a failed pass; default 1 s. */
  retryMs?: number;
}

/** Which clients a change concerns: every client of the tenant, or those of some devices. */
interface Target {
  tenantId: string;
  devices?: Set<string>;
}

const normFp = (fp: string) => fp.replace(/:/g, '').toLowerCase();

/** Serials compared as lowercase hex without separators or leading zeros. */
export function normalizeSerial(hex: string): string {
  const s = hex.replace(/[:\s]/g, '').toLowerCase().replace(/^0x/, '').replace(/^0+/, '');
  return s === '' ? '0' : s;
}

export function createBrokerSync(deps: BrokerSyncDeps) {
  const { broker, repository, feed, log } = deps;
  const batchMs = deps.batchMs ?? 100;
  const retryMs = deps.retryMs ?? 1_000;
  // Subjects of trusted certificates as last read: a deleted one is no longer in the database
  // when its change arrives, and its devices are still found by its subject.
  const subjects = new Map<string, string>();
  let pushedEtag: string | undefined;
  let bundleDue = true;
  let reconcileDue = false;
  let pendingDrops: SessionChange[] = [];
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let closed = false;

  function schedule(delay = batchMs): void {
    if (closed || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      running = (running ?? Promise.resolve()).then(pass);
    }, delay);
  }

  async function refreshBundle(): Promise<void> {
    const rows = await repository.trustedCertificates();
    for (const r of rows) subjects.set(`${r.tenantId}\u0000${normFp(r.fingerprint)}`, r.subject);
    const bundle = buildCaBundle(rows.filter((r) => r.status === 'ENABLED'));
    if (bundle.etag === pushedEtag) return;
    await broker.pushCaBundle(bundle.pem);
    pushedEtag = bundle.etag;
    log?.info({ certificates: bundle.count, etag: bundle.etag }, 'CA bundle pushed to the broker');
  }

  async function subjectOf(tenantId: string, fingerprint: string): Promise<string | undefined> {
    const key = `${tenantId}\u0000${normFp(fingerprint)}`;
    if (!subjects.has(key)) {
      for (const r of await repository.trustedCertificates()) subjects.set(`${r.tenantId}\u0000${normFp(r.fingerprint)}`, r.subject);
    }
    return subjects.get(key);
  }

  async function targetOf(change: SessionChange): Promise<Target> {
    switch (change.kind) {
      case 'tenant':
        return { tenantId: change.tenantId };
      case 'device':
        return { tenantId: change.tenantId, devices: new Set([change.deviceId]) };
      case 'trusted-certificate': {
        const subject = await subjectOf(change.tenantId, change.fingerprint);
        // A certificate never seen: its devices cannot be told apart, so the tenant's sessions close
        // (the verifier lets the others back in).
        if (subject === undefined) return { tenantId: change.tenantId };
        return { tenantId: change.tenantId, devices: new Set(await repository.devicesWithIssuer(change.tenantId, subject)) };
      }
      case 'serial':
      case 'serials': {
        const issuer = change.issuerFingerprint ? await subjectOf(change.tenantId, change.issuerFingerprint) : undefined;
        const serials = change.kind === 'serial' ? [change.serialHex] : change.serialHexes;
        const devices = await repository.devicesWithSerials(change.tenantId, serials.map(normalizeSerial), issuer);
        return { tenantId: change.tenantId, devices: new Set(devices) };
      }
    }
  }

  async function kickWhere(pick: (c: LiveClient) => boolean | Promise<boolean>): Promise<number> {
    let kicked = 0;
    for (const client of await broker.listClients()) {
      if (!(await pick(client))) continue;
      await broker.kick(client);
      kicked++;
    }
    return kicked;
  }

  async function pass(): Promise<void> {
    if (closed) return;
    const drops = pendingDrops;
    pendingDrops = [];
    const bundle = bundleDue;
    bundleDue = false;
    const reconcile = reconcileDue;
    reconcileDue = false;
    try {
      if (bundle) await refreshBundle();
      if (drops.length) {
        const targets = await Promise.all(drops.map(targetOf));
        const kicked = await kickWhere((c) =>
          targets.some((t) => c.tenantId === t.tenantId && (!t.devices || (c.deviceId !== undefined && t.devices.has(c.deviceId)))),
        );
        log?.info({ changes: drops.length, kicked }, 'sessions kicked on the broker');
      }
      if (reconcile) {
        const kicked = await kickWhere(async (c) => c.tenantId !== undefined && !(await repository.deviceActive(c.tenantId, c.deviceId ?? '')));
        log?.info({ kicked }, 'broker checked after the change feed reconnected');
      }
    } catch (err) {
      // Nothing is lost: what this pass had to do is done again on the next one.
      pendingDrops = [...drops, ...pendingDrops];
      bundleDue ||= bundle;
      reconcileDue ||= reconcile;
      log?.warn({ err: (err as Error).message }, 'broker sync failed; retrying');
      schedule(retryMs);
    }
  }

  function onEvent(e: ChangeEvent): void {
    if (e.type === 'session-drop') {
      pendingDrops.push(e.change);
      schedule();
    } else if (e.type === 'invalidate' && (e.what === 'trusted-certificates' || e.what === 'tenant')) {
      bundleDue = true;
      schedule();
    }
  }

  const unsubscribe = feed.subscribe(onEvent);
  const unresync = feed.onResync(() => {
    bundleDue = true;
    reconcileDue = true;
    schedule(0);
  });

  return {
    /** Pushes the bundle once; resolves when done (rejects when the broker refuses it). */
    async start(): Promise<void> {
      bundleDue = false;
      await refreshBundle();
    },
    async close(): Promise<void> {
      closed = true;
      if (timer) clearTimeout(timer);
      unsubscribe();
      unresync();
      await running;
    },
  };
}
