/**
 * Rules for uploading a trusted certificate and the key/algorithm strength rules
 * shared with path validation.
 */
import type { PublicKeyInfo, SignatureAlgorithm } from './algorithms.js';
import type { ParsedCertificate } from './certificate.js';

export type ProblemCode =
  | 'UNSUPPORTED_VERSION'
  | 'NOT_A_CA'
  | 'KEY_USAGE_INVALID'
  | 'CERTIFICATE_EXPIRED'
  | 'WEAK_KEY'
  | 'WEAK_SIGNATURE_ALGORITHM'
  | 'MALFORMED_CERTIFICATE'
  | 'UNKNOWN_CRITICAL_EXTENSION'
  | 'NAME_CONSTRAINTS_VIOLATED'
  | 'EXTENDED_KEY_USAGE_INVALID';

export interface Problem {
  readonly code: ProblemCode;
  readonly message: string;
}

/** Smallest RSA modulus accepted (NIST SP 800-131A). */
export const MIN_RSA_BITS = 2048;
/**
 * Largest RSA modulus accepted: bigger keys only make verification slow (a cheap DoS lever).
 * With the exponent bound below, one RSA check costs at most ~0.5 ms here (8192 bits, a 32-bit
 * exponent; 0.25 ms with 65537), so a path (10 certificates at most, 100 signature checks at most
 * while building it: path-validation.ts) costs a bounded time whatever a device presents.
 */
export const MAX_RSA_BITS = 8192;
/**
 * RSA public exponents accepted: odd, from 3 up to 2^32 - 1. An even exponent or 1 is no RSA key
 * (with e = 1 the "signature" is the padded digest itself, which anyone can write), and a large
 * exponent only makes each check slower (a ~3,070-bit one costs 120 times 65537's time).
 * OpenSSL and Go bound it the same way (Go: 2^31 - 1; OpenSSL 64 bits above 3072-bit moduli);
 * NIST SP 800-89 5.3.3 asks 65537 <= e < 2^256 of new keys, which old roots with e = 3 miss.
 */
export const MIN_RSA_EXPONENT = 3n;
export const MAX_RSA_EXPONENT = 2n ** 32n - 1n;
/** Curves accepted for EC keys. Smaller curves (P-192, P-224) offer under 112 bits of security. */
export const ALLOWED_CURVES: ReadonlySet<string> = new Set([
  'P-256',
  'P-384',
  'P-521',
  'brainpoolP256r1',
  'brainpoolP384r1',
  'brainpoolP512r1',
]);
const WEAK_HASHES: ReadonlySet<string> = new Set(['MD2', 'MD5', 'SHA1']);

// Module-level rather than closures: these run for every certificate of every path.
function weakKey(message: string): Problem {
  return { code: 'WEAK_KEY', message };
}

function weakSignature(message: string): Problem {
  return { code: 'WEAK_SIGNATURE_ALGORITHM', message };
}

/** Null when the subject public key is acceptable, else why not. */
export function checkKeyStrength(key: PublicKeyInfo): Problem | null {
  if (key.problem) return weakKey(key.problem);
  switch (key.algorithm) {
    case 'RSA':
    case 'RSA-PSS': {
      const bits = key.bits ?? 0;
      if (bits < MIN_RSA_BITS) return weakKey(`RSA key of ${bits} bits is weaker than the minimum of ${MIN_RSA_BITS}`);
      if (bits > MAX_RSA_BITS) return weakKey(`RSA key of ${bits} bits is larger than the supported maximum of ${MAX_RSA_BITS}`);
      // Real RSA keys are whole octets; an odd size points at a broken or crafted key (CA/B BR 6.1.5).
      if (bits % 8 !== 0) return weakKey(`RSA key of ${bits} bits is not a multiple of 8 bits`);
      const e = key.rsaExponent;
      if (e === undefined) return weakKey('RSA key without a public exponent');
      if (e % 2n === 0n || e < MIN_RSA_EXPONENT || e > MAX_RSA_EXPONENT) {
        const shown = e <= MAX_RSA_EXPONENT ? String(e) : `of ${e.toString(2).length} bits`;
        return weakKey(`RSA public exponent ${shown} is not accepted: it must be odd, at least ${MIN_RSA_EXPONENT} and below 2^32`);
      }
      return null;
    }
    case 'EC':
      if (key.explicitCurve) return weakKey('EC key with explicit curve parameters; only named curves are accepted (RFC 5480 2.1.1)');
      if (!key.curve || !ALLOWED_CURVES.has(key.curve)) return weakKey(`EC curve ${key.curve ?? 'unknown'} is not accepted`);
      return null;
    case 'Ed25519':
    case 'Ed448':
      return null;
    case 'DSA':
      return weakKey('DSA keys are not accepted');
    default:
      return weakKey('unsupported public key algorithm');
  }
}

/** Null when the signature algorithm is acceptable, else why not. */
export function checkSignatureStrength(alg: SignatureAlgorithm): Problem | null {
  if (alg.kind === 'unknown') return weakSignature(`unsupported signature algorithm ${alg.oid}`);
  if (alg.kind === 'dsa') return weakSignature(`${alg.name}: DSA signatures are not accepted`);
  if (alg.hash && WEAK_HASHES.has(alg.hash)) return weakSignature(`${alg.name}: ${alg.hash} signatures are not accepted`);
  if (alg.problem) return weakSignature(`${alg.name}: ${alg.problem}`);
  return null;
}

/**
 * Key and signature strength of one certificate. `signature: false` skips the certificate's own
 * signature algorithm, for a trust anchor whose self-signature nobody relies on (RFC 5280 6.1.1 (d)).
 */
export function checkWeakness(cert: ParsedCertificate, options: { signature?: boolean } = {}): Problem[] {
  const out: Problem[] = [];
  const key = checkKeyStrength(cert.publicKey);
  if (key) out.push(key);
  if (options.signature !== false) {
    const sig = checkSignatureStrength(cert.signatureAlgorithm);
    if (sig) out.push(sig);
  }
  return out;
}

/**
 * The upload rules for a trusted certificate, each a 422 with its message: version 3, basicConstraints
 * cA, keyCertSign when keyUsage is present, not expired, nothing weak; and nothing that would make
 * every path through it fail, so no certificate is stored under which no device can ever pass:
 * every profile defect path validation holds against a trust anchor (malformed, duplicate (RFC 5280
 * 4.2) or unknown critical extensions, a keyUsage whose encoding is invalid, a root whose
 * basicConstraints is not critical...), and a serial number outside RFC 5280 4.1.2.2 (negative,
 * zero, longer than 20 octets), which an anchor's paths would tolerate but no conforming CA issues.
 */
export function checkTrustedCaRules(cert: ParsedCertificate, now: Date = new Date()): Problem[] {
  const out: Problem[] = [];
  if (cert.version !== 3) {
    out.push({ code: 'UNSUPPORTED_VERSION', message: `certificate is X.509 version ${cert.version}; a trusted CA must be version 3` });
  }
  if (cert.basicConstraints?.ca !== true) {
    out.push({
      code: 'NOT_A_CA',
      message: cert.basicConstraints
        ? 'certificate is not a CA: basicConstraints does not set CA:true'
        : 'certificate is not a CA: it has no basicConstraints extension with CA:true',
    });
  }
  if (cert.keyUsage && !cert.keyUsage.has('keyCertSign')) {
    out.push({ code: 'KEY_USAGE_INVALID', message: 'keyUsage is present but does not include keyCertSign' });
  }
  if (cert.notAfter.getTime() < Math.floor(now.getTime() / 1000) * 1000) {
    out.push({ code: 'CERTIFICATE_EXPIRED', message: `certificate expired on ${cert.notAfter.toISOString()}` });
  }
  out.push(...checkWeakness(cert));
  // A defect of the same kind as a rule above says the same thing again (a CA's keyUsage without
  // keyCertSign is both); the rule's message is the plainer one.
  const ruled = new Set(out.map((p) => p.code));
  for (const d of cert.defects) {
    if ((d.anchorExempt && d.rule !== 'serial') || ruled.has(d.reason as ProblemCode)) continue;
    out.push({ code: d.reason as ProblemCode, message: d.message });
  }
  return out;
}

/**
 * Upload rules for a device credential (a certificate listed for one device), each a 422: a key
 * `checkKeyStrength` accepts (the verifier would deny WEAK_KEY), a serial number within RFC 5280
 * 4.1.2.2, no duplicate extension (RFC 5280 4.2). Other profile defects are left to the verifier,
 * which names them at each connection.
 */
export function checkCredentialRules(cert: ParsedCertificate): Problem[] {
  const out: Problem[] = [];
  const key = checkKeyStrength(cert.publicKey);
  if (key) out.push(key);
  for (const d of cert.defects) {
    if (d.rule) out.push({ code: 'MALFORMED_CERTIFICATE', message: d.message });
  }
  return out;
}

/**
 * Profile defects that would make every path through this certificate fail when it is used as a
 * trust anchor (for example a CA without subjectKeyIdentifier or with a non-critical
 * basicConstraints). Not upload rules of the contract; callers may show them as warnings.
 */
export function anchorProfileWarnings(cert: ParsedCertificate): string[] {
  return cert.defects.map((d) => d.message);
}
