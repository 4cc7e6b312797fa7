/**
 * The verifier's public shape. The HTTP route, the in-process MQTT listener
 * and the remote (HTTP) client all speak these types.
 */
export type DenyReason =
  | 'MALFORMED_CERTIFICATE'
  | 'CHAIN_TOO_LONG'
  | 'NO_TRUSTED_ANCHOR'
  | 'SIGNATURE_INVALID'
  | 'CERTIFICATE_EXPIRED'
  | 'CERTIFICATE_NOT_YET_VALID'
  | 'ISSUER_EXPIRED'
  | 'NOT_A_CA'
  | 'PATH_LENGTH_EXCEEDED'
  | 'KEY_USAGE_INVALID'
  | 'EXTENDED_KEY_USAGE_INVALID'
  | 'NAME_CONSTRAINTS_VIOLATED'
  | 'UNKNOWN_CRITICAL_EXTENSION'
  | 'WEAK_KEY'
  | 'WEAK_SIGNATURE_ALGORITHM'
  | 'CERTIFICATE_REVOKED'
  | 'TRUSTED_CERTIFICATE_DISABLED'
  | 'AMBIGUOUS_TENANT'
  | 'TENANT_SUSPENDED'
  | 'IDENTITY_NOT_FOUND'
  | 'CLIENT_ID_MISMATCH'
  | 'DEVICE_NOT_FOUND'
  | 'DEVICE_DISABLED'
  | 'CREDENTIALS_NOT_PINNED'
  | 'REGISTRATION_QUOTA_EXCEEDED';

export interface AuthenticateRequest {
  clientId: string;
  /** PEM or base64 DER, leaf first. */
  certificateChain: string[];
  username?: string;
  sni?: string;
}

export interface AclRule {
  permission: 'allow';
  action: 'publish' | 'subscribe';
  topic: string;
}

export interface AllowDecision {
  result: 'allow';
  is_superuser: false;
  tenantId: string;
  device: { id: string; name: string; autoRegistered: boolean };
  matchedBy: 'DEVICE_CREDENTIALS' | 'TRUSTED_CERTIFICATE';
  trustedCertificateFingerprint?: string;
  acl: AclRule[];
  client_attrs: { tenant_id: string; device_id: string; device_name: string };
  cacheTtlSeconds: number;
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
  | { kind: 'serial'; tenantId: string; serialHex: string; issuerFingerprint?: string };
