/**
 * Why a certificate chain, or a connection presenting it, is refused: the stable codes a
 * verifier answers with. Path validation, CRL and key checks speak these codes; the verifier
 * adds the ones about tenants and devices that follow a valid path.
 */
export const DENY_REASONS = [
  'MALFORMED_CERTIFICATE',
  'CHAIN_TOO_LONG',
  'NO_TRUSTED_ANCHOR',
  'SIGNATURE_INVALID',
  'CERTIFICATE_EXPIRED',
  'CERTIFICATE_NOT_YET_VALID',
  'ISSUER_EXPIRED',
  'NOT_A_CA',
  'PATH_LENGTH_EXCEEDED',
  'KEY_USAGE_INVALID',
  'EXTENDED_KEY_USAGE_INVALID',
  'NAME_CONSTRAINTS_VIOLATED',
  'UNKNOWN_CRITICAL_EXTENSION',
  'WEAK_KEY',
  'WEAK_SIGNATURE_ALGORITHM',
  'CERTIFICATE_REVOKED',
  'TRUSTED_CERTIFICATE_DISABLED',
  'AMBIGUOUS_TENANT',
  'TENANT_SUSPENDED',
  'IDENTITY_NOT_FOUND',
  'CLIENT_ID_MISMATCH',
  'DEVICE_NOT_FOUND',
  'DEVICE_DISABLED',
  'CREDENTIALS_NOT_PINNED',
  'REGISTRATION_QUOTA_EXCEEDED',
] as const;

export type DenyReason = (typeof DENY_REASONS)[number];

/**
 * Reasons given after the chain itself was found trusted (the list above is in the order the
 * decision checks): the explain endpoint reports such a chain as validated.
 */
export const AFTER_PATH_REASONS: ReadonlySet<DenyReason> = new Set(DENY_REASONS.slice(DENY_REASONS.indexOf('TENANT_SUSPENDED')));
