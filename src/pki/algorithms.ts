/**
 * Signature algorithms (RFC 5280 4.1.1.2, RFC 4055, RFC 5758, RFC 8410) and subject public keys
 * (RFC 5280 4.1.2.7), and the one place signatures are checked: Node's `crypto.verify` over the
 * TBS bytes (RSA-2048 ~17 µs, P-256 ~50-60 µs measured here), on the event loop.
 */
import { constants, createPublicKey, verify, type KeyObject } from 'node:crypto';
import {
  DerError,
  TAG,
  childrenOf,
  encodingOf,
  explicitInner,
  isContext,
  readBitString,
  readInteger,
  readOid,
  readSmallInt,
  readTlv,
  type Tlv,
} from './der.js';
import { pointProblem } from './curves.js';
import { CURVES, HASH_NAMES, OID } from './oids.js';

export type HashName = 'MD2' | 'MD5' | 'SHA1' | 'SHA224' | 'SHA256' | 'SHA384' | 'SHA512';

export type SignatureKind = 'rsa' | 'rsa-pss' | 'ecdsa' | 'dsa' | 'ed25519' | 'ed448' | 'unknown';

export interface SignatureAlgorithm {
  readonly oid: string;
  /** Java-style name as Cumulocity reports it: `SHA256withRSA`, `SHA256withECDSA`, `Ed25519`. */
  readonly name: string;
  readonly kind: SignatureKind;
  readonly hash: HashName | null;
  /** RSASSA-PSS salt length (RFC 4055 3.1). */
  readonly saltLength?: number;
  /** Why the parameters cannot be used, when they cannot. */
  readonly problem?: string;
  /** The AlgorithmIdentifier's DER, for the RFC 5280 4.1.1.2 equality check. */
  readonly der: Uint8Array;
}

interface KnownSignature {
  name: string;
  kind: SignatureKind;
  hash: HashName | null;
}

const SIGNATURES: Readonly<Record<string, KnownSignature>> = {
  '1.2.840.113549.1.1.2': { name: 'MD2withRSA', kind: 'rsa', hash: 'MD2' },
  '1.2.840.113549.1.1.4': { name: 'MD5withRSA', kind: 'rsa', hash: 'MD5' },
  '1.2.840.113549.1.1.5': { name: 'SHA1withRSA', kind: 'rsa', hash: 'SHA1' },
  '1.3.14.3.2.29': { name: 'SHA1withRSA', kind: 'rsa', hash: 'SHA1' },
  '1.2.840.113549.1.1.14': { name: 'SHA224withRSA', kind: 'rsa', hash: 'SHA224' },
  '1.2.840.113549.1.1.11': { name: 'SHA256withRSA', kind: 'rsa', hash: 'SHA256' },
  '1.2.840.113549.1.1.12': { name: 'SHA384withRSA', kind: 'rsa', hash: 'SHA384' },
  '1.2.840.113549.1.1.13': { name: 'SHA512withRSA', kind: 'rsa', hash: 'SHA512' },
  '1.2.840.10045.4.1': { name: 'SHA1withECDSA', kind: 'ecdsa', hash: 'SHA1' },
  '1.2.840.10045.4.3.1': { name: 'SHA224withECDSA', kind: 'ecdsa', hash: 'SHA224' },
  '1.2.840.10045.4.3.2': { name: 'SHA256withECDSA', kind: 'ecdsa', hash: 'SHA256' },
  '1.2.840.10045.4.3.3': { name: 'SHA384withECDSA', kind: 'ecdsa', hash: 'SHA384' },
  '1.2.840.10045.4.3.4': { name: 'SHA512withECDSA', kind: 'ecdsa', hash: 'SHA512' },
  '1.2.840.10040.4.3': { name: 'SHA1withDSA', kind: 'dsa', hash: 'SHA1' },
  '2.16.840.1.101.3.4.3.1': { name: 'SHA224withDSA', kind: 'dsa', hash: 'SHA224' },
  '2.16.840.1.101.3.4.3.2': { name: 'SHA256withDSA', kind: 'dsa', hash: 'SHA256' },
  [OID.ed25519]: { name: 'Ed25519', kind: 'ed25519', hash: null },
  [OID.ed448]: { name: 'Ed448', kind: 'ed448', hash: null },
};

/** Parses an AlgorithmIdentifier used for a signature. Unknown algorithms parse with kind `unknown`. */
export function parseSignatureAlgorithm(t: Tlv): SignatureAlgorithm {
  if (t.tag !== TAG.SEQUENCE) throw new DerError('AlgorithmIdentifier must be a SEQUENCE');
  const [oidTlv, params, ...extra] = childrenOf(t);
  if (!oidTlv || extra.length) throw new DerError('bad AlgorithmIdentifier');
  const oid = readOid(oidTlv);
  const der = encodingOf(t);
  if (oid === OID.rsassaPss) return parsePss(params, der);
  const known = SIGNATURES[oid];
  if (!known) return { oid, name: oid, kind: 'unknown', hash: null, der, problem: 'unsupported signature algorithm' };
  // RFC 4055 / RFC 5758 / RFC 8410: RSA takes NULL (or absent) parameters, ECDSA and EdDSA none.
  if (params && !(known.kind === 'rsa' && params.tag === TAG.NULL)) {
    return { oid, ...known, der, problem: 'unexpected signature algorithm parameters' };
  }
  return { oid, ...known, der };
}

/** RFC 4055 3.1 RSASSA-PSS-params; only MGF1 with the same hash and trailerField 1 are usable. */
function parsePss(params: Tlv | undefined, der: Uint8Array): SignatureAlgorithm {
  let hashOid: string = OID.sha1;
  let mgfHashOid: string = OID.sha1;
  let saltLength = 20;
  let trailer = 1;
  if (params && params.tag !== TAG.SEQUENCE) throw new DerError('bad RSASSA-PSS parameters');
  for (const field of params ? childrenOf(params) : []) {
    const inner = explicitInner(field);
    if (isContext(field, 0)) hashOid = readOid(childrenOf(inner)[0]);
    else if (isContext(field, 1)) {
      const [mgfOid, mgfParams] = childrenOf(inner);
      if (readOid(mgfOid) !== OID.mgf1 || !mgfParams) throw new DerError('unsupported mask generation function');
      mgfHashOid = readOid(childrenOf(mgfParams)[0]);
    } else if (isContext(field, 2)) saltLength = readSmallInt(inner);
    else if (isContext(field, 3)) trailer = readSmallInt(inner);
    else throw new DerError('bad RSASSA-PSS parameters');
  }
  const hash = (HASH_NAMES[hashOid] ?? null) as HashName | null;
  const base = { oid: OID.rsassaPss, name: 'RSASSA-PSS', kind: 'rsa-pss' as const, hash, saltLength, der };
  if (!hash) return { ...base, problem: 'unsupported RSASSA-PSS hash' };
  if (mgfHashOid !== hashOid) return { ...base, problem: 'RSASSA-PSS with a different MGF1 hash is not supported' };
  if (trailer !== 1) return { ...base, problem: 'unsupported RSASSA-PSS trailer field' };
  return base;
}

// ---------------------------------------------------------------------------------------------

export type KeyAlgorithm = 'RSA' | 'RSA-PSS' | 'EC' | 'Ed25519' | 'Ed448' | 'DSA' | 'unknown';

export interface PublicKeyInfo {
  readonly algorithm: KeyAlgorithm;
  readonly oid: string;
  /** RSA modulus bits, EC field size, DSA prime size; null when unknown. */
  readonly bits: number | null;
  /** Named curve (`P-256`) or the curve OID when unknown; null for non-EC keys. */
  readonly curve: string | null;
  /** EC parameters given explicitly instead of as a named curve (RFC 5480 2.1.1 forbids). */
  readonly explicitCurve: boolean;
  /** RSA public exponent (RFC 8017 3.1); judged by `checkKeyStrength`. */
  readonly rsaExponent?: bigint;
  /** Why the key cannot be used, when it cannot. */
  readonly problem?: string;
}

/** Parses a SubjectPublicKeyInfo enough to judge its strength; the key itself goes to Node. */
export function parsePublicKeyInfo(t: Tlv): PublicKeyInfo {
  if (t.tag !== TAG.SEQUENCE) throw new DerError('SubjectPublicKeyInfo must be a SEQUENCE');
  const [algTlv, keyTlv, ...extra] = childrenOf(t);
  if (!algTlv || !keyTlv || extra.length) throw new DerError('bad SubjectPublicKeyInfo');
  const [oidTlv, params] = childrenOf(algTlv);
  if (!oidTlv) throw new DerError('bad key AlgorithmIdentifier');
  const oid = readOid(oidTlv);
  const key = readBitString(keyTlv);
  const none = { oid, bits: null, curve: null, explicitCurve: false };
  try {
    switch (oid) {
      case OID.rsaEncryption:
      case OID.rsassaPss: {
        if (key.unusedBits !== 0) throw new DerError('public key BIT STRING has unused bits');
        return { ...none, algorithm: oid === OID.rsaEncryption ? 'RSA' : 'RSA-PSS', ...rsaKey(key.bytes) };
      }
      case OID.ecPublicKey: {
        if (key.unusedBits !== 0) throw new DerError('public key BIT STRING has unused bits');
        const curve = ecCurve(params);
        const problem = curve.curve ? pointProblem(curve.curve, key.bytes) : null;
        return { ...none, algorithm: 'EC', ...curve, ...(problem ? { problem } : {}) };
      }
      case OID.ed25519:
        return { ...none, algorithm: 'Ed25519', bits: 256 };
      case OID.ed448:
        return { ...none, algorithm: 'Ed448', bits: 456 };
      case OID.dsa:
        return { ...none, algorithm: 'DSA', bits: params ? dsaBits(params) : null };
      default:
        return { ...none, algorithm: 'unknown', problem: 'unsupported public key algorithm' };
    }
  } catch (e) {
    if (e instanceof DerError) return { ...none, algorithm: 'unknown', problem: `malformed public key: ${e.message}` };
    throw e;
  }
}

/** RFC 8017 A.1.1 RSAPublicKey: the modulus size in bits and the public exponent. */
function rsaKey(bytes: Uint8Array): { bits: number; rsaExponent: bigint; problem?: string } {
  const seq = readTlv(bytes, 0, bytes.length);
  if (seq.tag !== TAG.SEQUENCE || seq.end !== bytes.length) throw new DerError('bad RSAPublicKey');
  const [modulus, exponent, ...extra] = childrenOf(seq);
  if (!modulus || !exponent || extra.length) throw new DerError('bad RSAPublicKey');
  const n = readInteger(modulus);
  if (n.negative || n.zero) throw new DerError('bad RSA modulus');
  const e = readInteger(exponent);
  if (e.negative || e.zero) throw new DerError('bad RSA public exponent');
  const v = modulus.buf.subarray(modulus.valueStart, modulus.end);
  let i = 0;
  while (i < v.length && v[i] === 0) i++;
  const bits = (v.length - i) * 8 - Math.clz32(v[i]) + 24;
  const rsaExponent = BigInt('0x' + e.hex);
  // A modulus is the product of two odd primes: an even one is no RSA key at all.
  if ((v[v.length - 1] & 1) === 0) return { bits, rsaExponent, problem: 'RSA modulus is even' };
  return { bits, rsaExponent };
}

function ecCurve(params: Tlv | undefined): { bits: number | null; curve: string | null; explicitCurve: boolean } {
  if (!params) throw new DerError('EC key without parameters');
  if (params.tag === TAG.OID) {
    const oid = readOid(params);
    const known = CURVES[oid];
    return { bits: known?.bits ?? null, curve: known?.name ?? oid, explicitCurve: false };
  }
  if (params.tag === TAG.SEQUENCE) return { bits: null, curve: 'explicit', explicitCurve: true };
  throw new DerError('bad EC parameters');
}

function dsaBits(params: Tlv): number {
  const [p] = childrenOf(params);
  if (!p) throw new DerError('bad DSA parameters');
  const v = p.buf.subarray(p.valueStart, p.end);
  let i = 0;
  while (i < v.length && v[i] === 0) i++;
  return i < v.length ? (v.length - i) * 8 - Math.clz32(v[i]) + 24 : 0;
}

// ---------------------------------------------------------------------------------------------

const NODE_HASH: Readonly<Record<HashName, string>> = {
  MD2: 'md2',
  MD5: 'md5',
  SHA1: 'sha1',
  SHA224: 'sha224',
  SHA256: 'sha256',
  SHA384: 'sha384',
  SHA512: 'sha512',
};

/** Key types (Node's `asymmetricKeyType`) able to check each signature kind. */
const KEY_TYPES: Readonly<Record<SignatureKind, readonly string[]>> = {
  rsa: ['rsa'],
  'rsa-pss': ['rsa', 'rsa-pss'],
  ecdsa: ['ec'],
  dsa: ['dsa'],
  ed25519: ['ed25519'],
  ed448: ['ed448'],
  unknown: [],
};

/** Builds a Node key from SubjectPublicKeyInfo DER; null when OpenSSL refuses it. */
export function importPublicKey(spki: Uint8Array): KeyObject | null {
  try {
    return createPublicKey({ key: Buffer.from(spki.buffer, spki.byteOffset, spki.byteLength), format: 'der', type: 'spki' });
  } catch {
    return null;
  }
}

/**
 * How `crypto.verify` checks `alg`: the digest (null for EdDSA) and, for RSASSA-PSS only, the
 * padding and salt length.
 */
interface VerifyParams {
  readonly digest: string | null;
  readonly padding?: number;
  readonly saltLength?: number;
}

/** The `crypto.verify` parameters for `alg` with `key`; null when the key cannot check `alg`. */
function verifyParams(alg: SignatureAlgorithm, key: KeyObject): VerifyParams | null {
  if (alg.problem || !KEY_TYPES[alg.kind].includes(key.asymmetricKeyType ?? '')) return null;
  switch (alg.kind) {
    case 'ed25519':
    case 'ed448':
      return { digest: null };
    case 'rsa-pss':
      return { digest: NODE_HASH[alg.hash!], padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: alg.saltLength };
    case 'ecdsa':
    case 'dsa':
    case 'rsa':
      return { digest: NODE_HASH[alg.hash!] };
    default:
      return null;
  }
}

/**
 * Checks `signature` over `data` with `key`. Returns false for any mismatch: wrong key type,
 * unusable parameters, malformed signature, or a failed check. Never throws.
 */
export function verifySignature(
  data: Uint8Array,
  signature: Uint8Array,
  alg: SignatureAlgorithm,
  key: KeyObject,
): boolean {
  const params = verifyParams(alg, key);
  if (!params) return false;
  try {
    // DER signatures are Node's default for (EC)DSA. Passing the KeyObject itself, not an options
    // object, spares Node 24 two thrown-and-caught type probes (~15 µs per verification).
    const keyArg = params.padding === undefined ? key : { key, padding: params.padding, saltLength: params.saltLength };
    return verify(params.digest, data, keyArg, signature);
  } catch {
    return false;
  }
}
