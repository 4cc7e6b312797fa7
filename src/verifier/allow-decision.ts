/**
 * The body of an allow decision. MQTT brokers read it as it is, EMQX's HTTP authenticator most
 * strictly (emqx_authn_http:extract_auth_data): `client_attrs` values are turned into binaries
 * (a `null` fails the whole authentication), `expire_at` must be Unix seconds in the future, and
 * the ACL rules are checked before any other authorization source and, when none matches, the
 * topic is passed on to `authorization.no_match` (allow by default). So every value here is a
 * string, the expiry is the leaf's, and the ACL ends by denying everything else. The profile's
 * deny rules come before its allow rules, so a deny wins (EMQX stops at the first rule that matches).
 */
import type { AclRule, AllowDecision, ClientAttrs } from './verifier-types.js';

/** The last ACL rule: what the rules before it do not grant is refused. */
export const DENY_EVERYTHING_ELSE: AclRule = Object.freeze({ permission: 'deny', action: 'all', topic: '#' });

export interface AllowInput {
  tenantId: string;
  device: { id: string; name: string; autoRegistered: boolean };
  matchedBy: AllowDecision['matchedBy'];
  trustedCertificateFingerprint?: string;
  /** The profile's rules with the device filled in: its deny rules, then its allow rules. */
  rules: AclRule[];
  leafNotAfter: Date;
  cacheTtlSeconds: number;
}

export function allowDecision(input: AllowInput): AllowDecision {
  const { tenantId, device } = input;
  const clientAttrs: ClientAttrs = {
    tenant_id: String(tenantId),
    device_id: String(device.id ?? ''),
    device_name: String(device.name ?? ''),
  };
  return {
    result: 'allow',
    is_superuser: false,
    tenantId,
    device,
    matchedBy: input.matchedBy,
    ...(input.trustedCertificateFingerprint ? { trustedCertificateFingerprint: input.trustedCertificateFingerprint } : {}),
    acl: [...input.rules, DENY_EVERYTHING_ELSE],
    client_attrs: clientAttrs,
    cacheTtlSeconds: input.cacheTtlSeconds,
    // Rounded down: a broker must drop the session no later than the certificate stops being valid.
    expire_at: Math.floor(input.leafNotAfter.getTime() / 1000),
  };
}
