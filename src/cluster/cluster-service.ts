/**
 * What a clustered broker asks certgate besides "who is this?": may this device publish or
 * subscribe here, now (EMQX's HTTP authorizer, VerneMQ's auth_on_publish/auth_on_subscribe
 * webhooks), and which CA certificates its TLS listener must trust.
 *
 * Authorization is decided from the device's current state, read through the verifier's caches
 * (kept current by the change feed): the device exists and is ACTIVE, its tenant is ACTIVE, and
 * its profile's ACL templates, filled in, allow the topic and none of its deny templates refuses
 * it. So an ACL change, a disabled device or a suspended tenant applies on the device's next
 * publish or subscribe, without a reconnect.
 */
import crypto from 'node:crypto';
import { isUuid } from '../lib/ids.js';
import { toPem } from '../pki/certificate.js';
import { filterCovers, isValidTopicFilter, isValidTopicName, topicMatches } from '../mqtt/topics.js';
import type { TrustCache } from '../verifier/trust-cache.js';
import { expandAcl } from '../verifier/verifier-service.js';
import type { AclRule } from '../verifier/verifier-types.js';

export type BrokerAction = 'publish' | 'subscribe';

export interface TrustedCertificateRow {
  fingerprint: string;
  certDer: Uint8Array;
}

export interface ClusterServiceDeps {
  cache: Pick<TrustCache, 'deviceById' | 'tenantStatus' | 'profile'>;
  /** Resolves once the caches reflect every committed change (the verifier's trust state); rejects when the store is down. */
  current?: () => Promise<void>;
  /** Every ENABLED trusted certificate of every tenant. */
  enabledTrustedCertificates(): Promise<TrustedCertificateRow[]>;
}

export interface CaBundle {
  pem: string;
  /** A strong ETag: the SHA-256 of the bundle, quoted. */
  etag: string;
  count: number;
}

/** `$share/{group}/{filter}` (MQTT 5 4.8.2): the ACL applies to the filter, as EMQX checks it. */
function realFilter(filter: string): string {
  if (!filter.startsWith('$share/')) return filter;
  const slash = filter.indexOf('/', '$share/'.length);
  return slash < 0 ? filter : filter.slice(slash + 1);
}

/**
 * Is `topic` allowed by `acl` for `action`? Rules are read in order, first match wins, as EMQX
 * reads them (emqx_authz_rule:matches): a publish topic is matched by a rule's filter, a
 * subscription only when the rule's filter covers every topic the subscription can match
 * (`devices/dev1/#` allows `devices/dev1/+/state`, never `devices/#`). The profile's deny rules come
 * first, so a deny wins: a subscription a deny filter covers is refused; a wider one is decided by
 * the allow rules.
 */
export function aclAllows(acl: readonly AclRule[], action: BrokerAction, topic: string): boolean {
  const t = action === 'subscribe' ? realFilter(topic) : topic;
  if (action === 'publish' ? !isValidTopicName(t) : !isValidTopicFilter(t)) return false;
  for (const rule of acl) {
    if (rule.action !== 'all' && rule.action !== action) continue;
    const matched = action === 'publish' ? topicMatches(rule.topic, t) : filterCovers(rule.topic, t);
    if (matched) return rule.permission === 'allow';
  }
  return false;
}

/**
 * The CA file of a broker's TLS listener: each certificate once (a CA several tenants trust is
 * listed once), in fingerprint order, so the same set always gives the same bytes and ETag.
 */
export function buildCaBundle(rows: readonly TrustedCertificateRow[]): CaBundle {
  const byFingerprint = new Map<string, Uint8Array>();
  for (const r of rows) byFingerprint.set(r.fingerprint.toLowerCase(), r.certDer);
  const fingerprints = [...byFingerprint.keys()].sort();
  const pem = fingerprints.map((fp) => toPem(byFingerprint.get(fp)!)).join('');
  return { pem, etag: `"${crypto.hash('sha256', pem, 'hex')}"`, count: fingerprints.length };
}

export function createClusterService(deps: ClusterServiceDeps) {
  const { cache } = deps;

  /**
   * The device's ACL rules as they are now (deny rules first), or null when the device may do nothing (unknown,
   * of another tenant, disabled; its tenant suspended or gone).
   */
  async function currentAcl(tenantId: string, deviceId: string): Promise<AclRule[] | null> {
    if (!tenantId || !isUuid(deviceId)) return null;
    await deps.current?.();
    const device = await cache.deviceById(tenantId, deviceId);
    if (!device || device.tenantId !== tenantId || device.status !== 'ACTIVE') return null;
    if ((await cache.tenantStatus(tenantId)) !== 'ACTIVE') return null;
    const profile = await cache.profile(tenantId, device.deviceProfileId);
    return profile ? expandAcl(profile, device) : [];
  }

  return {
    currentAcl,

    async authorize(input: { tenantId: string; deviceId: string; action: BrokerAction; topic: string }): Promise<'allow' | 'deny'> {
      const acl = await currentAcl(input.tenantId, input.deviceId);
      return acl && aclAllows(acl, input.action, input.topic) ? 'allow' : 'deny';
    },

    /** Every enabled trusted certificate of every tenant (see buildCaBundle). */
    async caBundle(): Promise<CaBundle> {
      return buildCaBundle(await deps.enabledTrustedCertificates());
    },
  };
}

export type ClusterService = ReturnType<typeof createClusterService>;
