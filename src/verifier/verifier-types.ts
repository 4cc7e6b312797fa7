/**
 * The verifier's public shape. The HTTP route, the in-process MQTT listener
 * and the remote (HTTP) client all speak these types.
 */
import type { DenyReason } from '../pki/reasons.js';

/** Reason codes belong to the X.509 layer; the verifier answers with them. */
export type { DenyReason };

export interface AuthenticateRequest {
  clientId: string;
  /** PEM or base64 DER, leaf first; the leaf alone is enough when a tenant trusts its issuer. */
  certificateChain: string[];
  username?: string;
  sni?: string;
  /**
   * Decide for this tenant only: a chain of another tenant is denied as if nothing trusted it.
   * A broker that keeps tenants' client ids apart by a tenant prefix sends the prefix here.
   */
  tenantId?: string;
}

/**
 * One ACL rule, in the raw shape EMQX reads from an HTTP authenticator (`permission`, `action`,
 * `topic`). The profile's templates give `allow` rules; a decision ends with one `deny` of
 * everything, for brokers that let a topic no rule matches through.
 */
export interface AclRule {
  permission: 'allow' | 'deny';
  action: 'publish' | 'subscribe' | 'all';
  topic: string;
}

/** EMQX copies these onto the client; every value is a string, every key matches `^[A-Za-z0-9]+[A-Za-z0-9-_]*$`. */
export interface ClientAttrs {
  tenant_id: string;
  device_id: string;
  device_name: string;
}

export interface AllowDecision {
  result: 'allow';
  is_superuser: false;
  tenantId: string;
  device: { id: string; name: string; autoRegistered: boolean };
  matchedBy: 'DEVICE_CREDENTIALS' | 'TRUSTED_CERTIFICATE';
  trustedCertificateFingerprint?: string;
  acl: AclRule[];
  client_attrs: ClientAttrs;
  cacheTtlSeconds: number;
  /** Unix seconds; never after the leaf's notAfter (a broker disconnects the client then). */
  expire_at: number;
}

export interface DenyDecision {
  result: 'deny';
  reason: DenyReason;
  message: string;
}

export type Decision = AllowDecision | DenyDecision;

/**
 * Resolves a presented chain to one tenant and one device.
 * Throws VerifierUnavailableError when the store cannot be reached: callers fail closed
 * (HTTP 503, MQTT "server unavailable").
 */
export interface Verifier {
  authenticate(request: AuthenticateRequest): Promise<Decision>;
  /**
   * Decides again for a live session, without side effects (nothing registered or recorded): a
   * device that would have to be registered anew no longer exists, which is a deny. Without it,
   * `authenticate` serves.
   */
  recheck?(request: AuthenticateRequest): Promise<Decision>;
}

export class VerifierUnavailableError extends Error {
  constructor(message = 'verifier unavailable') {
    super(message);
    this.name = 'VerifierUnavailableError';
  }
}

/**
 * A change that must close live sessions: published on PostgreSQL
 * NOTIFY so every listener process sees it.
 */
export type SessionChange =
  | { kind: 'tenant'; tenantId: string }
  | { kind: 'device'; tenantId: string; deviceId: string }
  | { kind: 'trusted-certificate'; tenantId: string; fingerprint: string }
  | { kind: 'serial'; tenantId: string; serialHex: string; issuerFingerprint?: string }
  /**
   * Many serials at once (an imported CRL): as many `serial` changes, in one NOTIFY payload of a
   * few hundred serials instead of one each (a CRL of 100,000 entries is some 600 of them).
   */
  | { kind: 'serials'; tenantId: string; serialHexes: string[]; issuerFingerprint?: string };
