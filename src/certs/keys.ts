/**
 * Key pairs: generated with WebCrypto, held as Node `KeyObject`s (usable by `tls`, `crypto.sign`
 * and WebCrypto alike), written as unencrypted PKCS#8 PEM.
 */
import { KeyObject, createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import { MAX_RSA_BITS } from '../pki/ca-rules.js';
import { CertsError } from './certs-errors.js';

const subtle = webcrypto.subtle;

export type KeyAlgorithm = 'ec' | 'rsa';
export type EcCurve = 'P-256' | 'P-384' | 'P-521';
export type HashAlgorithm = 'SHA-1' | 'SHA-256' | 'SHA-384' | 'SHA-512';

export interface KeySpec {
  /** `ec` (default) or `rsa`. */
  key?: KeyAlgorithm;
  /** RSA modulus size; default 2048. The CLI allows 2048, 3072 and 4096; the library anything WebCrypto makes. */
  rsaBits?: number;
  /** EC curve; default P-256. */
  curve?: EcCurve;
}

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** OpenSSL curve names as Node reports them, to WebCrypto's. */
const CURVES: Record<string, EcCurve> = {
  prime256v1: 'P-256',
  secp384r1: 'P-384',
  secp521r1: 'P-521',
};

export async function generateKeyPair(spec: KeySpec = {}): Promise<KeyPair> {
  const kind = spec.key ?? 'ec';
  let pair: webcrypto.CryptoKeyPair;
  if (kind === 'rsa') {
    const bits = spec.rsaBits ?? 2048;
    // No larger than certgate accepts: a bigger key would make a CA no tenant can trust.
    if (!Number.isInteger(bits) || bits < 1024 || bits > MAX_RSA_BITS) {
      throw new CertsError('INVALID_OPTION', `RSA key size ${bits} is not supported`);
    }
    pair = await subtle.generateKey(
      {
        name: 'RSASSA-PKCS1-v1_5',
        modulusLength: bits,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: 'SHA-256',
      },
      true,
      ['sign', 'verify'],
    );
  } else if (kind === 'ec') {
    pair = await subtle.generateKey({ name: 'ECDSA', namedCurve: spec.curve ?? 'P-256' }, true, ['sign', 'verify']);
  } else {
    throw new CertsError('INVALID_OPTION', `unknown key type "${String(kind)}" (use ec or rsa)`);
  }
  return { privateKey: KeyObject.from(pair.privateKey), publicKey: KeyObject.from(pair.publicKey) };
}

/** PKCS#8 PEM, unencrypted (`-----BEGIN PRIVATE KEY-----`), as `openssl genpkey` writes it. */
export function privateKeyToPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/**
 * Reads a private key PEM: PKCS#8 (plain or encrypted) and the traditional `RSA PRIVATE KEY` /
 * `EC PRIVATE KEY` forms `openssl genrsa` and `openssl ecparam -genkey` write (which may carry
 * an `EC PARAMETERS` block first; OpenSSL's PEM reader skips it, and so does Node's).
 */
export function readPrivateKey(pem: string | Uint8Array, password?: string, what = 'private key'): KeyObject {
  try {
    return createPrivateKey({
      key: typeof pem === 'string' ? pem : Buffer.from(pem),
      format: 'pem',
      ...(password !== undefined ? { passphrase: password } : {}),
    });
  } catch (err) {
    const code = (err as { code?: string }).code;
    const reason = (err as Error).message ?? '';
    const text = typeof pem === 'string' ? pem : Buffer.from(pem).toString('latin1');
    const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text);
    if (password === undefined && (encrypted || code === 'ERR_MISSING_PASSPHRASE')) {
      throw new CertsError('KEY_ENCRYPTED', `${what} is encrypted and no password was given`);
    }
    if (password !== undefined && (encrypted || /bad decrypt/i.test(reason))) {
      throw new CertsError('KEY_PASSWORD_WRONG', `${what} could not be decrypted: wrong password`);
    }
    throw new CertsError('KEY_UNREADABLE', `${what} is not a readable PEM private key`);
  }
}

export function publicKeyOf(key: KeyObject): KeyObject {
  return key.type === 'public' ? key : createPublicKey(key);
}

/** SubjectPublicKeyInfo DER (RFC 5280 4.1.2.7). */
export function spkiDer(key: KeyObject): Uint8Array {
  return new Uint8Array(publicKeyOf(key).export({ type: 'spki', format: 'der' }));
}

/** The hash a signature with this key uses when none is asked for: matched to the key's strength. */
export function defaultHashFor(key: KeyObject): HashAlgorithm {
  if (key.asymmetricKeyType === 'ec') {
    const curve = CURVES[key.asymmetricKeyDetails?.namedCurve ?? ''];
    if (curve === 'P-384') return 'SHA-384';
    if (curve === 'P-521') return 'SHA-512';
  }
  return 'SHA-256';
}

/** Describes a key for people: `EC P-256`, `RSA 3072`. */
export function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') return `EC ${CURVES[d.namedCurve ?? ''] ?? d.namedCurve ?? ''}`.trim();
  if (key.asymmetricKeyType === 'rsa') return `RSA ${d.modulusLength ?? ''}`.trim();
  return String(key.asymmetricKeyType ?? 'unknown').toUpperCase();
}

/**
 * A WebCrypto signing key for pkijs. WebCrypto binds an RSA key to one hash, so the key is
 * imported for the hash of this signature rather than reused.
 */
export async function toSigningKey(key: KeyObject, hash: HashAlgorithm): Promise<webcrypto.CryptoKey> {
  if (key.type !== 'private') throw new CertsError('KEY_UNSUPPORTED', 'a private key is needed to sign');
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  if (key.asymmetricKeyType === 'rsa') {
    return subtle.importKey('pkcs8', pkcs8, { name: 'RSASSA-PKCS1-v1_5', hash }, false, ['sign']);
  }
  if (key.asymmetricKeyType === 'ec') {
    const curve = CURVES[key.asymmetricKeyDetails?.namedCurve ?? ''];
    if (!curve) {
      throw new CertsError(
        'KEY_UNSUPPORTED',
        `EC curve ${key.asymmetricKeyDetails?.namedCurve ?? '(unnamed)'} is not supported (use P-256, P-384 or P-521)`,
      );
    }
    return subtle.importKey('pkcs8', pkcs8, { name: 'ECDSA', namedCurve: curve }, false, ['sign']);
  }
  throw new CertsError('KEY_UNSUPPORTED', `${describeKey(key)} keys are not supported (use an EC or RSA key)`);
}

/** True when `privateKey` is the private half of `publicKey` (compared as key material). */
export function keysMatch(privateKey: KeyObject, publicKey: KeyObject): boolean {
  try {
    return publicKeyOf(privateKey).equals(publicKey);
  } catch {
    return false;
  }
}
