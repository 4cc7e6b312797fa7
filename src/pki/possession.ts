/**
 * Proof of possession of a CA key: the user signs the unsigned verification code
 * with the CA's private key, `openssl dgst -sha256 -sign ca.key`, and sends the base64 signature.
 */
import { verify } from 'node:crypto';
import { checkKeyStrength } from './ca-rules.js';
import { publicKeyOf, type ParsedCertificate } from './certificate.js';

/**
 * True when `signatureBase64` is a SHA-256 signature of `code` (UTF-8) by the key of `cert`:
 * PKCS#1 v1.5 for RSA and DER-encoded ECDSA for EC keys (what `openssl dgst -sha256 -sign`
 * writes), or a plain Ed25519/Ed448 signature. Never throws.
 *
 * False for a key `checkKeyStrength` refuses, whatever the signature: with an RSA exponent of 1
 * the "signature" is the padded digest of the code, which anyone can write without a private key.
 */
export function verifyProofOfPossession(cert: ParsedCertificate, code: string, signatureBase64: string): boolean {
  if (checkKeyStrength(cert.publicKey)) return false;
  const key = publicKeyOf(cert);
  if (!key || typeof signatureBase64 !== 'string') return false;
  const clean = signatureBase64.replace(/\s+/g, '');
  if (clean.length === 0 || clean.length > 4096 || !/^[A-Za-z0-9+/]+={0,2}$/.test(clean)) return false;
  const signature = Buffer.from(clean, 'base64');
  const data = Buffer.from(code, 'utf8');
  try {
    const type = key.asymmetricKeyType;
    if (type === 'ed25519' || type === 'ed448') return verify(null, data, key, signature);
    if (type === 'ec') return verify('sha256', data, { key, dsaEncoding: 'der' }, signature);
    if (type === 'rsa') return verify('sha256', data, key, signature);
    return false;
  } catch {
    return false;
  }
}
