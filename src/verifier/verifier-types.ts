/**
 * The verifier's public shape. The HTTP route, the in-process MQTT listener
 * and the remote (HTTP) client all speak these types.
 */
import type { DenyReason } from '../pki/reasons.js';

/** Reason codes belong to the X.509 layer; the verifier answers with them. */
export type { DenyReason };

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
