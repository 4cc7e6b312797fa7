/**
 * One parse of an X.509 certificate (RFC 5280 4.1) into everything certgate needs: identity for
 * the registry (fingerprints, names, serial), structure for path validation (extensions, TBS,
 * signature) and the profile defects that make a certificate unusable in a path.
 *
 * Cost, measured on Node 24 here for a P-256 device certificate in PEM: 14-25 µs for this parse,
 * fingerprints included, against 18-28 µs for `crypto.X509Certificate` (which still lacks TBS
 * bytes, key usage bits and name constraints) and ~220 µs for `pkijs.Certificate.fromBER`.
 * The Node `KeyObject` (~29 µs for EC) is built lazily, only for certificates that sign others.
 */
import { hash, type KeyObject } from 'node:crypto';
import type { DenyReason } from './reasons.js';
import {
  parsePublicKeyInfo,
  parseSignatureAlgorithm,
  importPublicKey,
  verifySignature,
  type PublicKeyInfo,
  type SignatureAlgorithm,
} from './algorithms.js';
import {
  DerError,
  TAG,
  bytesEqual,
  childrenOf,
  encodingOf,
  explicitInner,
  isContext,
  readBitString,
  readBoolean,
  readInteger,
  readOctetString,
  readOid,
  readSmallInt,
  readTime,
  readTlv,
  readWhole,
  toHex,
  valueOf,
  type Tlv,
} from './der.js';
import { parseExtensions, type CertificateExtensions } from './extensions.js';
import { attributeValues, isEmptyName, parseName, type Name } from './names.js';
import { OID } from './oids.js';

export type { KeyUsage, BasicConstraints, AuthorityKeyIdentifier, NameConstraints, SubjectAltNames } from './extensions.js';

/** Thrown for input that is not one X.509 certificate. Carries no internal detail beyond the cause. */
export class CertificateParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CertificateParseError';
  }
}

/** A reason a certificate cannot take part in a valid path, found without looking at the path. */
export interface CertificateDefect {
  readonly reason: DenyReason;
  readonly message: string;
  /**
   * Irrelevant when the certificate is the trust anchor: an anchor stands for its name and key
   * (RFC 5280 6.1.1 (d)), so its serial number and its own issuer linkage do not matter.
   */
  readonly anchorExempt?: boolean;
  /**
   * Rules that uploads name (ca-rules.ts): a serial number outside RFC 5280 4.1.2.2, refused even
   * for an anchor, and a duplicate extension (RFC 5280 4.2), refused for device credentials too.
   */
  readonly rule?: 'serial' | 'duplicate-extension';
}

export interface Extension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: Uint8Array;
}

export interface ParsedCertificate extends CertificateExtensions {
  readonly der: Uint8Array;
  /** Lowercase hex SHA-1 of the DER: Cumulocity's `fingerprint`. */
  readonly sha1: string;
  /** Lowercase hex SHA-256 of the DER: certgate's `credentialsId`. */
  readonly sha256: string;
  /** Lowercase hex without leading zeros (`0` for zero); negative serials keep their two's complement. */
  readonly serialNumberHex: string;
  readonly version: 1 | 2 | 3;
  /** RFC 4514 strings, most specific first: `CN=dev1,O=Acme`. */
  readonly subject: string;
  readonly issuer: string;
  readonly subjectName: Name;
  readonly issuerName: Name;
  /** Raw DER of the subject and issuer Name, for exact comparison. */
  readonly subjectDer: Uint8Array;
  readonly issuerDer: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Java-style name (`SHA256withRSA`), as Cumulocity's `algorithmName`. */
  readonly algorithmName: string;
  readonly signatureAlgorithm: SignatureAlgorithm;
  readonly publicKey: PublicKeyInfo;
  /** First subject CN, or null. */
  readonly commonName: string | null;
  readonly extensions: readonly Extension[];
  readonly criticalExtensions: readonly string[];
  /** The DER of TBSCertificate: the signed bytes. */
  readonly tbs: Uint8Array;
  readonly signature: Uint8Array;
  /** The DER of SubjectPublicKeyInfo. */
  readonly spki: Uint8Array;
  /** Subject and issuer are the same name (RFC 5280 6.1: "self-issued"). */
  readonly selfIssued: boolean;
  readonly defects: readonly CertificateDefect[];
}

/** Certificates larger than this are refused before parsing (the largest real ones are ~10 KiB). */
export const MAX_CERTIFICATE_BYTES = 256 * 1024;

/**
 * Parses PEM (with or without BEGIN/END lines, with or without line breaks), base64 DER or DER.
 * Throws CertificateParseError for anything else; never anything else.
 */
export function parseCertificate(input: string | Uint8Array): ParsedCertificate {
  const der = toDer(input);
  try {
    return parseDer(der);
  } catch (e) {
    if (e instanceof DerError) throw new CertificateParseError(`not a valid X.509 certificate: ${e.message}`);
    if (e instanceof CertificateParseError) throw e;
    throw new CertificateParseError('not a valid X.509 certificate');
  }
}

/** Decodes the accepted textual forms to DER bytes. */
export function toDer(input: string | Uint8Array): Uint8Array {
  if (typeof input !== 'string') {
    if (!(input instanceof Uint8Array)) throw new CertificateParseError('certificate must be text or bytes');
    if (input.length > 0 && input[0] === 0x30) return checkSize(new Uint8Array(input));
    input = Buffer.from(input).toString('latin1');
  }
  if (input.length > MAX_CERTIFICATE_BYTES * 2) throw new CertificateParseError('certificate too large');
  return checkSize(decodeBase64Body(pemBody(input)));
}

function checkSize(der: Uint8Array): Uint8Array {
  if (der.length === 0) throw new CertificateParseError('empty certificate');
  if (der.length > MAX_CERTIFICATE_BYTES) throw new CertificateParseError('certificate too large');
  return der;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)(?:-----END \1-----|$)/;
const PEM_HEAD = '-----BEGIN CERTIFICATE-----';
const PEM_TAIL = '-----END CERTIFICATE-----';

/** The base64 part of one PEM certificate, or the whole text when it has no armour. */
function pemBody(text: string): string {
  const begin = text.indexOf('-----BEGIN');
  if (begin < 0) return text;
  // The common case, one plain CERTIFICATE block, found without regular expressions.
  if (text.startsWith(PEM_HEAD, begin) && text.indexOf('-----BEGIN', begin + PEM_HEAD.length) < 0) {
    const end = text.indexOf(PEM_TAIL, begin + PEM_HEAD.length);
    return text.slice(begin + PEM_HEAD.length, end < 0 ? text.length : end);
  }
  const blocks = text.match(/-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----/g)?.length ?? 0;
  if (blocks > 1) throw new CertificateParseError(`expected one certificate, found ${blocks}`);
  const m = PEM_BLOCK.exec(text);
  if (!m) throw new CertificateParseError('malformed PEM');
  if (!/^(X509 |TRUSTED )?CERTIFICATE$/.test(m[1])) throw new CertificateParseError(`PEM block is ${m[1]}, not CERTIFICATE`);
  return m[2];
}

/** Per character code below 128: 1 base64 digit, 2 `=`, 3 ASCII white space, 0 anything else. */
const BASE64_CLASS = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') BASE64_CLASS[c.charCodeAt(0)] = 1;
BASE64_CLASS['='.charCodeAt(0)] = 2;
for (const c of ' \t\n\v\f\r') BASE64_CLASS[c.charCodeAt(0)] = 3;

function notBase64(): never {
  throw new CertificateParseError('certificate is neither PEM nor base64 DER');
}

/**
 * Base64 digits and padding characters of `text`, checked in one pass; -1 when it holds
 * characters to clean first (a backslash, anything beyond ASCII).
 */
function countBase64(text: string): { digits: number; padding: number } | -1 {
  let digits = 0;
  let padding = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const kind = code < 128 ? BASE64_CLASS[code]! : 0;
    if (kind === 1) {
      if (padding) notBase64();
      digits++;
    } else if (kind === 2) {
      if (++padding > 2) notBase64();
    } else if (kind === 0) {
      if (code === 0x5c || code >= 128) return -1;
      notBase64();
    }
  }
  return { digits, padding };
}

function decodeBase64Body(body: string): Uint8Array {
  let count = countBase64(body);
  if (count === -1) {
    // Users paste PEM bodies with literal "\n" left over from JSON, or with white space beyond
    // ASCII: none of these characters can be base64, so dropping them is safe.
    body = body.replace(/\\[rn]/g, '').replace(/\s+/g, '');
    count = countBase64(body);
    if (count === -1) notBase64();
  }
  const { digits, padding } = count;
  if (digits + padding === 0) throw new CertificateParseError('empty certificate');
  if (digits === 0 || (digits + padding) % 4 === 1) notBase64();
  // Decoded into a buffer of its own (a view of Node's shared pool would keep the pool alive);
  // the decoder skips the line breaks and other white space.
  const out = Buffer.allocUnsafeSlow(Math.floor((digits * 3) / 4));
  const der = new Uint8Array(out.buffer, out.byteOffset, out.write(body, 'base64'));
  if (der[0] !== 0x30) notBase64();
  return der;
}

/** Splits a PEM bundle (a chain file) into one PEM string per certificate, in file order. */
export function splitPemBundle(text: string): string[] {
  const out: string[] = [];
  const re = /-----BEGIN ((?:X509 |TRUSTED )?CERTIFICATE)-----[\s\S]*?-----END \1-----/g;
  for (const m of text.matchAll(re)) out.push(m[0]);
  return out;
}

/** Base64 of the DER without header lines or line breaks, as Cumulocity returns `certInPemFormat`. */
export function toPemBody(der: Uint8Array): string {
  return Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
}

/** A standard PEM certificate with 64-character lines. */
export function toPem(der: Uint8Array): string {
  const lines = toPemBody(der).match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

// ---------------------------------------------------------------------------------------------

function parseDer(der: Uint8Array): ParsedCertificate {
  const cert = readWhole(der);
  if (cert.tag !== TAG.SEQUENCE) throw new DerError('Certificate must be a SEQUENCE');
  const [tbsTlv, sigAlgTlv, sigTlv, ...extra] = childrenOf(cert);
  if (!tbsTlv || !sigAlgTlv || !sigTlv || extra.length) throw new DerError('Certificate must have three fields');
  if (tbsTlv.tag !== TAG.SEQUENCE) throw new DerError('TBSCertificate must be a SEQUENCE');

  const fields = childrenOf(tbsTlv);
  let i = 0;
  let version: 1 | 2 | 3 = 1;
  if (fields[i] && isContext(fields[i], 0) && fields[i].constructed) {
    const v = readSmallInt(explicitInner(fields[i++]));
    if (v > 2) throw new DerError('unknown certificate version');
    version = (v + 1) as 1 | 2 | 3;
  }
  const serialTlv = need(fields[i++], 'serialNumber');
  const tbsSigAlgTlv = need(fields[i++], 'signature');
  const issuerTlv = need(fields[i++], 'issuer');
  const validityTlv = need(fields[i++], 'validity');
  const subjectTlv = need(fields[i++], 'subject');
  const spkiTlv = need(fields[i++], 'subjectPublicKeyInfo');
  let extensionsTlv: Tlv | undefined;
  for (; i < fields.length; i++) {
    const f = fields[i];
    if (isContext(f, 1) || isContext(f, 2)) {
      if (version < 2) throw new DerError('unique identifiers require version 2 or 3');
    } else if (isContext(f, 3) && !extensionsTlv) {
      if (version < 3) throw new DerError('extensions require version 3');
      extensionsTlv = explicitInner(f);
    } else {
      throw new DerError('unexpected field in TBSCertificate');
    }
  }

  const serial = readInteger(serialTlv);
  const tbsSigAlg = parseSignatureAlgorithm(tbsSigAlgTlv);
  const signatureAlgorithm = parseSignatureAlgorithm(sigAlgTlv);
  const issuerName = parseName(issuerTlv);
  const subjectName = parseName(subjectTlv);
  const [nbTlv, naTlv, ...vExtra] = childrenOf(validityTlv);
  if (!nbTlv || !naTlv || vExtra.length) throw new DerError('bad validity');
  const notBefore = readTime(nbTlv);
  const notAfter = readTime(naTlv);
  const publicKey = parsePublicKeyInfo(spkiTlv);
  const signature = readBitString(sigTlv);
  if (signature.unusedBits !== 0) throw new DerError('signature has unused bits');

  const rawExtensions = extensionsTlv ? readExtensionList(extensionsTlv) : [];
  const parsed = parseExtensions(rawExtensions);
  const selfIssued = issuerName.key === subjectName.key;

  const base = {
    der,
    sha1: hash('sha1', der, 'hex'),
    sha256: hash('sha256', der, 'hex'),
    serialNumberHex: stripLeadingZeros(serial.hex),
    version,
    subject: subjectName.text,
    issuer: issuerName.text,
    subjectName,
    issuerName,
    subjectDer: subjectName.der,
    issuerDer: issuerName.der,
    notBefore,
    notAfter,
    algorithmName: signatureAlgorithm.name,
    signatureAlgorithm,
    publicKey,
    commonName: attributeValues(subjectName, OID.commonName)[0] ?? null,
    extensions: rawExtensions,
    criticalExtensions: rawExtensions.filter((e) => e.critical).map((e) => e.oid),
    tbs: encodingOf(tbsTlv),
    signature: signature.bytes,
    spki: encodingOf(spkiTlv),
    selfIssued,
    ...parsed.values,
  };
  const defects: CertificateDefect[] = parsed.defects;
  addStructuralDefects(defects, base, serial, tbsSigAlg);
  (base as { defects?: readonly CertificateDefect[] }).defects = defects;
  return Object.freeze(base as unknown as ParsedCertificate);
}

function need(t: Tlv | undefined, what: string): Tlv {
  if (!t) throw new DerError(`missing ${what}`);
  return t;
}

function readExtensionList(t: Tlv): Extension[] {
  if (t.tag !== TAG.SEQUENCE) throw new DerError('Extensions must be a SEQUENCE');
  const out: Extension[] = [];
  for (const ext of childrenOf(t)) {
    if (ext.tag !== TAG.SEQUENCE) throw new DerError('Extension must be a SEQUENCE');
    const kids = childrenOf(ext);
    const oid = readOid(need(kids[0], 'extnID'));
    let critical = false;
    let k = 1;
    if (kids[k] && kids[k].tag === TAG.BOOLEAN) critical = readBoolean(kids[k++]);
    const value = readOctetString(need(kids[k++], 'extnValue'));
    if (k !== kids.length) throw new DerError('bad Extension');
    out.push({ oid, critical, value });
  }
  return out;
}

function stripLeadingZeros(hex: string): string {
  const s = hex.replace(/^0+/, '');
  return s === '' ? '0' : s;
}

type Base = Omit<ParsedCertificate, 'defects'>;

function addMalformed(out: CertificateDefect[], message: string, anchorExempt = false): void {
  out.push(anchorExempt ? { reason: 'MALFORMED_CERTIFICATE', message, anchorExempt } : { reason: 'MALFORMED_CERTIFICATE', message });
}

function addBadSerial(out: CertificateDefect[], message: string): void {
  out.push({ reason: 'MALFORMED_CERTIFICATE', message, anchorExempt: true, rule: 'serial' });
}

/**
 * RFC 5280 profile rules that hold for a certificate on its own. They are recorded, not thrown:
 * an unused certificate with a defect must not spoil a path that does not include it.
 */
function addStructuralDefects(
  out: CertificateDefect[],
  c: Base,
  serial: { negative: boolean; zero: boolean; length: number },
  tbsSigAlg: SignatureAlgorithm,
): void {
  // RFC 5280 4.1.2.2: a positive integer of at most 20 octets.
  if (serial.negative) addBadSerial(out, 'serial number is negative (RFC 5280 4.1.2.2)');
  if (serial.zero) addBadSerial(out, 'serial number is zero (RFC 5280 4.1.2.2)');
  if (serial.length > 20) addBadSerial(out, `serial number is ${serial.length} octets long; at most 20 are allowed (RFC 5280 4.1.2.2)`);
  // RFC 5280 4.1.1.2: signatureAlgorithm MUST equal the TBS signature field.
  if (!bytesEqual(tbsSigAlg.der, c.signatureAlgorithm.der)) {
    addMalformed(out, 'signatureAlgorithm differs from the signature field of the TBS certificate (RFC 5280 4.1.1.2)');
  }
  // RFC 5280 4.1.2.4: the issuer field MUST contain a non-empty distinguished name.
  if (isEmptyName(c.issuerName)) addMalformed(out, 'issuer name is empty (RFC 5280 4.1.2.4)');
  const isCa = c.basicConstraints?.ca === true;
  // RFC 5280 4.1.2.6: a CA's subject MUST be a non-empty distinguished name.
  if (isCa && isEmptyName(c.subjectName)) addMalformed(out, 'CA certificate has an empty subject (RFC 5280 4.1.2.6)');
  // RFC 5280 4.2.1.9: a CA MUST mark basicConstraints critical. Held for self-signed roots only:
  // ThingsBoard's guide makes its intermediate with `openssl x509 -req -extfile <(echo
  // "basicConstraints=CA:TRUE")`, which is non-critical, and `openssl verify` accepts it.
  if (isCa && c.selfIssued && c.basicConstraints && !c.basicConstraints.critical) {
    out.push({ reason: 'NOT_A_CA', message: 'basicConstraints of a root CA certificate is not critical (RFC 5280 4.2.1.9)' });
  }
  if (c.version === 3) {
    // RFC 5280 4.2.1.2: every CA certificate MUST carry a subject key identifier.
    if (isCa && !c.subjectKeyId) addMalformed(out, 'CA certificate has no subjectKeyIdentifier (RFC 5280 4.2.1.2)');
    // RFC 5280 4.2.1.1: MUST be present except in self-signed certificates.
    if (!c.authorityKeyId && !c.selfIssued) {
      addMalformed(out, 'certificate has no authorityKeyIdentifier (RFC 5280 4.2.1.1)', true);
    }
  }
}

// ---------------------------------------------------------------------------------------------

const keyCache = new WeakMap<ParsedCertificate, KeyObject | null>();

/**
 * The certificate's public key as a Node KeyObject, built on first use and kept with the parsed
 * certificate (anchors and intermediates are cached by callers, so this happens once per CA).
 * Null when OpenSSL refuses the key.
 */
export function publicKeyOf(cert: ParsedCertificate): KeyObject | null {
  let key = keyCache.get(cert);
  if (key === undefined) {
    key = importPublicKey(cert.spki);
    keyCache.set(cert, key);
  }
  return key;
}

/** Whether `issuer`'s key verifies `subject`'s signature (in line; see SignatureCache for the memo). */
export function signedBy(issuer: ParsedCertificate, subject: ParsedCertificate): boolean {
  const key = publicKeyOf(issuer);
  return key !== null && verifySignature(subject.tbs, subject.signature, subject.signatureAlgorithm, key);
}

/** True when both certificates are the same DER. */
export function sameCertificate(a: ParsedCertificate, b: ParsedCertificate): boolean {
  return a.sha256 === b.sha256;
}


