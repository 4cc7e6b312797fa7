/**
 * The checks of a verifier decision, each a small function of what it needs that answers
 * `{ok: true, ...}` or `{ok: false, reason, message}`; `decision.ts` composes them in order.
 * None reads the store: callers pass in what the caches hold. A step given a trace notes itself
 * there (the explain endpoint shows it).
 */
import type { ParsedCertificate } from '../pki/certificate.js';
import { extractIdentity } from '../pki/identity.js';
import type { TraceStep } from '../pki/path-validation.js';
import type { DenyReason } from '../pki/reasons.js';
import { isValidDeviceName } from '../modules/devices/devices-schemas.js';
import { revokedCredentialKey, type TenantRevocations } from './trust-cache.js';
import type { CredentialRef, DeviceRef, ProfileRef } from './verifier-repository.js';
import type { AclRule } from './verifier-types.js';

export const MAX_CHAIN_LENGTH = 10;
export const CACHE_TTL_SECONDS = 60;

/** A refusal, filed under `tenantId` when the decision got as far as a tenant. */
export interface Denied {
  ok: false;
  reason: DenyReason;
  message: string;
  tenantId?: string;
}

export type Result<T extends object = object> = ({ ok: true } & T) | Denied;

export const OK: { ok: true } = { ok: true };

export function denied(reason: DenyReason, message: string, tenantId?: string): Denied {
  return { ok: false, reason, message, tenantId };
}

export function note(trace: TraceStep[] | undefined, step: string, ok: boolean, detail: string): void {
  trace?.push({ step, ok, detail });
}

/** Parse: at least one certificate, at most MAX_CHAIN_LENGTH, each readable. */
export function parseChain(
  chain: readonly string[],
  parse: (input: string) => ParsedCertificate,
  trace?: TraceStep[],
): Result<{ leaf: ParsedCertificate; presented: ParsedCertificate[] }> {
  if (chain.length === 0) return denied('MALFORMED_CERTIFICATE', 'no certificate was presented');
  if (chain.length > MAX_CHAIN_LENGTH) {
    return denied('CHAIN_TOO_LONG', `the chain has ${chain.length} certificates; at most ${MAX_CHAIN_LENGTH} are accepted`);
  }
  let certs: ParsedCertificate[];
  try {
    certs = chain.map(parse);
  } catch (err) {
    note(trace, 'parse', false, (err as Error).message);
    return denied('MALFORMED_CERTIFICATE', `a certificate of the chain cannot be read: ${(err as Error).message}`);
  }
  const [leaf, ...presented] = certs as [ParsedCertificate, ...ParsedCertificate[]];
  if (trace) note(trace, 'parse', true, `leaf ${leaf.subject} (serial ${leaf.serialNumberHex}), ${presented.length} more certificate(s)`);
  return { ok: true, leaf, presented };
}

/** A certificate listed for a device names it, unless it was revoked for it. */
export function listedCredential(credential: CredentialRef, trace?: TraceStep[]): Result {
  if (credential.status === 'REVOKED') {
    note(trace, 'credentials', false, 'the certificate is revoked for its device');
    return denied('CERTIFICATE_REVOKED', 'this certificate was revoked for its device', credential.tenantId);
  }
  note(trace, 'credentials', true, `certificate listed for device ${credential.deviceId} (${credential.source})`);
  return OK;
}

/** A self-signed certificate pinned through the API has no path: its own validity is all there is to check. */
export function selfSignedValidity(leaf: ParsedCertificate, now: Date, tenantId: string, trace?: TraceStep[]): Result {
  if (now < leaf.notBefore || now > leaf.notAfter) {
    const early = now < leaf.notBefore;
    note(trace, 'validity', false, `the certificate is valid from ${leaf.notBefore.toISOString()} to ${leaf.notAfter.toISOString()}`);
    return denied(early ? 'CERTIFICATE_NOT_YET_VALID' : 'CERTIFICATE_EXPIRED', early ? 'the certificate is not valid yet' : 'the certificate has expired', tenantId);
  }
  note(trace, 'path', true, 'self-signed certificate pinned through the API');
  return OK;
}

/**
 * Revocation in the tenant: the leaf revoked as a device credential (matched by issuer and
 * serial, so a re-encoded copy is caught too), or any certificate of the path held by serial
 * under its issuer, or under any CA of the tenant.
 */
export function revocation(path: readonly ParsedCertificate[], revoked: TenantRevocations, tenantId: string, trace?: TraceStep[]): Result {
  const leaf = path[0]!;
  if (revoked.revokedCredentials.has(revokedCredentialKey(leaf.issuer, leaf.serialNumberHex))) {
    note(trace, 'revocation', false, `certificate serial ${leaf.serialNumberHex} of ${leaf.issuer} is revoked for its device`);
    return denied('CERTIFICATE_REVOKED', 'this certificate was revoked for its device', tenantId);
  }
  for (let i = 0; i < path.length - 1; i++) {
    const holds = revoked.bySerial.get(path[i]!.serialNumberHex);
    if (holds && (holds.has('') || holds.has(path[i + 1]!.sha1))) {
      note(trace, 'revocation', false, `serial ${path[i]!.serialNumberHex} of ${path[i]!.subject} is revoked`);
      return denied('CERTIFICATE_REVOKED', `certificate serial ${path[i]!.serialNumberHex} is revoked`, tenantId);
    }
  }
  note(trace, 'revocation', true, 'no certificate of the path is revoked');
  return OK;
}

/** The tenant is active (a deleted one has no status). */
export function tenantActive(tenantId: string, status: 'ACTIVE' | 'SUSPENDED' | null, trace?: TraceStep[]): Result {
  if (status !== 'ACTIVE') {
    note(trace, 'tenant', false, `tenant ${tenantId} is ${status ?? 'gone'}`);
    return denied('TENANT_SUSPENDED', `tenant ${tenantId} is suspended`, tenantId);
  }
  note(trace, 'tenant', true, `tenant ${tenantId} is active`);
  return OK;
}

/** The device name, taken from the certificate by the profile's rule. */
export function identity(
  leaf: ParsedCertificate,
  profile: ProfileRef | undefined,
  tenantId: string,
  trace?: TraceStep[],
): Result<{ name: string; profile: ProfileRef }> {
  if (!profile) return denied('IDENTITY_NOT_FOUND', 'the tenant has no device profile', tenantId);
  const name = extractIdentity(leaf, {
    source: profile.identitySource,
    pattern: profile.identityPattern,
    uriPrefix: profile.identityUriPrefix ?? undefined,
  });
  if (name === null || !isValidDeviceName(name)) {
    note(trace, 'identity', false, `no device name in the ${profile.identitySource} matches ${profile.identityPattern}`);
    return denied('IDENTITY_NOT_FOUND', `no device name could be taken from the certificate (${profile.identitySource})`, tenantId);
  }
  note(trace, 'identity', true, `device name ${name}`);
  return { ok: true, name, profile };
}

/** Cumulocity's rule: the client id equals the device name; a leading `d:` is ignored. */
export function clientIdMatches(clientId: string, deviceName: string): boolean {
  return (clientId.startsWith('d:') ? clientId.slice(2) : clientId) === deviceName;
}

/** The profile's client id policy; `clientId` undefined skips it (an explanation asked without one). */
export function clientIdPolicy(
  clientId: string | undefined,
  deviceName: string,
  profile: Pick<ProfileRef, 'clientIdPolicy'> | undefined,
  tenantId: string,
  trace?: TraceStep[],
): Result {
  if (clientId === undefined || profile?.clientIdPolicy !== 'MUST_MATCH_DEVICE_NAME' || clientIdMatches(clientId, deviceName)) return OK;
  note(trace, 'client id', false, `client id ${clientId} is not ${deviceName}`);
  return denied('CLIENT_ID_MISMATCH', `client id must be the device name ${deviceName}`, tenantId);
}

/** A device that pins its credentials accepts only the active certificates listed for it through the API. */
export function pinning(device: Pick<DeviceRef, 'name' | 'pinCredentials'>, listedThroughApi: boolean, tenantId: string, trace?: TraceStep[]): Result {
  if (!device.pinCredentials || listedThroughApi) return OK;
  note(trace, 'pinning', false, `device ${device.name} accepts only its listed certificates`);
  return denied('CREDENTIALS_NOT_PINNED', `device ${device.name} accepts only its listed certificates`, tenantId);
}

export function deviceActive(device: Pick<DeviceRef, 'name' | 'status'>, tenantId: string, trace?: TraceStep[]): Result {
  if (device.status === 'ACTIVE') return OK;
  note(trace, 'device', false, `device ${device.name} is disabled`);
  return denied('DEVICE_DISABLED', `device ${device.name} is disabled`, tenantId);
}

function fillTopic(template: string, device: { id: string; name: string }): string {
  return template.replaceAll('{deviceName}', device.name).replaceAll('{deviceId}', device.id);
}

/**
 * ACL templates of the profile with the device filled in, deny rules first: read in order, first
 * match wins (as EMQX reads an ACL), a deny always wins over an allow.
 */
export function expandAcl(
  profile: Pick<ProfileRef, 'aclPublish' | 'aclSubscribe'> & Partial<Pick<ProfileRef, 'aclDenyPublish' | 'aclDenySubscribe'>>,
  device: { id: string; name: string },
): AclRule[] {
  const rules = (permission: AclRule['permission'], action: 'publish' | 'subscribe', templates: readonly string[] | undefined) =>
    (templates ?? []).map((t): AclRule => ({ permission, action, topic: fillTopic(t, device) }));
  return [
    ...rules('deny', 'publish', profile.aclDenyPublish),
    ...rules('deny', 'subscribe', profile.aclDenySubscribe),
    ...rules('allow', 'publish', profile.aclPublish),
    ...rules('allow', 'subscribe', profile.aclSubscribe),
  ];
}
