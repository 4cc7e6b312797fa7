/**
 * Certificate revocation lists (RFC 5280 5): parsing, and the checks of RFC 5280 6.3.3 that apply
 * to a complete CRL imported for one CA: issuer name, cRLSign, signature, CRL profile.
 */
import type { DenyReason } from './reasons.js';
import { parseSignatureAlgorithm, verifySignature, type SignatureAlgorithm } from './algorithms.js';
import { checkSignatureStrength } from './ca-rules.js';
import { publicKeyOf, type ParsedCertificate } from './certificate.js';
import {
  DerError,
  TAG,
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
import { parseName, type Name } from './names.js';
import { OID } from './oids.js';

export class CrlParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CrlParseError';
  }
}

export interface RevokedEntry {
  /** Lowercase hex without leading zeros, as the registry stores serials. */
  readonly serialHex: string;
  readonly revocationDate: Date;
}

export interface ParsedCrl {
  readonly der: Uint8Array;
  readonly tbs: Uint8Array;
  readonly signature: Uint8Array;
  readonly signatureAlgorithm: SignatureAlgorithm;
  readonly issuerName: Name;
  /** RFC 4514 string of the issuer. */
  readonly issuer: string;
  readonly thisUpdate: Date;
  readonly nextUpdate?: Date;
  /** CRL number as lowercase hex, when present. */
  readonly crlNumberHex?: string;
  /** Authority key identifier keyIdentifier, lowercase hex. */
  readonly authorityKeyId?: string;
  readonly revoked: readonly RevokedEntry[];
  /** Profile problems that make the CRL unusable (RFC 5280 5.2, 5.3). */
  readonly defects: readonly string[];
}

const MISSING_CRL_NUMBER = 'CRL has no cRLNumber extension (RFC 5280 5.2.3)';

export const MAX_CRL_BYTES = 8 * 1024 * 1024;

/** Parses a CRL given as PEM (`X509 CRL`), base64 DER or DER. Throws CrlParseError otherwise. */
export function parseCrl(input: string | Uint8Array): ParsedCrl {
  const der = crlDer(input);
  try {
    return parseCrlDer(der);
  } catch (e) {
    if (e instanceof DerError) throw new CrlParseError(`not a valid CRL: ${e.message}`);
    throw new CrlParseError('not a valid CRL');
  }
}

function crlDer(input: string | Uint8Array): Uint8Array {
  if (typeof input !== 'string') {
    if (input.length > 0 && input[0] === 0x30) return checkSize(new Uint8Array(input));
    input = Buffer.from(input).toString('latin1');
  }
  let body = input;
  if (input.includes('-----BEGIN')) {
    const m = /-----BEGIN X509 CRL-----([\s\S]*?)-----END X509 CRL-----/.exec(input);
    if (!m) throw new CrlParseError('PEM does not contain an X509 CRL block');
    body = m[1];
  }
  const clean = body.replace(/\\[rn]/g, '').replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(clean)) throw new CrlParseError('CRL is neither PEM nor base64 DER');
  return checkSize(new Uint8Array(Buffer.from(clean, 'base64')));
}

function checkSize(der: Uint8Array): Uint8Array {
  if (der.length === 0) throw new CrlParseError('empty CRL');
  if (der.length > MAX_CRL_BYTES) throw new CrlParseError('CRL too large');
  return der;
}

/** CRL extensions whose meaning certgate handles (RFC 5280 5.2). */
const CRL_EXTENSIONS = new Set<string>([OID.authorityKeyIdentifier, OID.issuerAltName, OID.cRLNumber, OID.issuingDistributionPoint]);
/** Entry extensions (RFC 5280 5.3); certificateIssuer (indirect CRLs) is not supported. */
const ENTRY_EXTENSIONS = new Set<string>([OID.cRLReason, OID.invalidityDate]);

function parseCrlDer(der: Uint8Array): ParsedCrl {
  const top = readWhole(der);
  if (top.tag !== TAG.SEQUENCE) throw new DerError('CertificateList must be a SEQUENCE');
  const [tbsTlv, algTlv, sigTlv, ...extra] = childrenOf(top);
  if (!tbsTlv || !algTlv || !sigTlv || extra.length) throw new DerError('CertificateList must have three fields');
  const f = childrenOf(tbsTlv);
  let i = 0;
  let version = 1;
  if (f[i]?.tag === TAG.INTEGER) version = readSmallInt(f[i++]) + 1;
  const tbsAlg = parseSignatureAlgorithm(need(f[i++]));
  const issuerName = parseName(need(f[i++]));
  const thisUpdate = readTime(need(f[i++]));
  let nextUpdate: Date | undefined;
  if (f[i] && (f[i].tag === TAG.UTC_TIME || f[i].tag === TAG.GENERALIZED_TIME)) nextUpdate = readTime(f[i++]);
  const defects: string[] = [];
  const revoked: RevokedEntry[] = [];
  if (f[i]?.tag === TAG.SEQUENCE) {
    for (const entry of childrenOf(f[i++])) revoked.push(parseEntry(entry, defects));
  }
  let crlNumberHex: string | undefined;
  let authorityKeyId: string | undefined;
  if (f[i] && isContext(f[i], 0)) {
    for (const ext of readExtensions(explicitInner(f[i++]))) {
      if (ext.critical && !CRL_EXTENSIONS.has(ext.oid)) defects.push(`unsupported critical CRL extension ${ext.oid}`);
      if (ext.oid === OID.cRLNumber) {
        // RFC 5280 5.2.3: non-critical, a non-negative integer of at most 20 octets.
        if (ext.critical) defects.push('cRLNumber extension must not be critical (RFC 5280 5.2.3)');
        const n = readInteger(readTlv(ext.value, 0, ext.value.length));
        if (n.negative || n.length > 21) defects.push('cRLNumber out of range (RFC 5280 5.2.3)');
        crlNumberHex = n.hex.replace(/^0+(?=.)/, '');
      } else if (ext.oid === OID.authorityKeyIdentifier) {
        for (const fld of childrenOf(readTlv(ext.value, 0, ext.value.length))) {
          if (isContext(fld, 0) && !fld.constructed) authorityKeyId = toHex(valueOf(fld));
        }
      } else if (ext.oid === OID.deltaCRLIndicator) {
        defects.push('delta CRLs are not supported');
      }
    }
  }
  if (i !== f.length) throw new DerError('unexpected field in TBSCertList');
  if (version > 2) throw new DerError('unknown CRL version');
  // RFC 5280 5.2.3: conforming CRL issuers MUST include the CRL number.
  if (crlNumberHex === undefined) defects.push(MISSING_CRL_NUMBER);
  const signatureAlgorithm = parseSignatureAlgorithm(algTlv);
  if (toHex(tbsAlg.der) !== toHex(signatureAlgorithm.der)) {
    defects.push('signatureAlgorithm differs from the signature field of the TBS CRL (RFC 5280 5.1.1.2)');
  }
  const sig = readBitString(sigTlv);
  return {
    der,
    tbs: encodingOf(tbsTlv),
    signature: sig.bytes,
    signatureAlgorithm,
    issuerName,
    issuer: issuerName.text,
    thisUpdate,
    ...(nextUpdate ? { nextUpdate } : {}),
    ...(crlNumberHex !== undefined ? { crlNumberHex } : {}),
    ...(authorityKeyId !== undefined ? { authorityKeyId } : {}),
    revoked,
    defects,
  };
}

function need(t: Tlv | undefined): Tlv {
  if (!t) throw new DerError('truncated TBSCertList');
  return t;
}

function parseEntry(t: Tlv, defects: string[]): RevokedEntry {
  const [serialTlv, dateTlv, extsTlv] = childrenOf(t);
  if (!serialTlv || !dateTlv) throw new DerError('bad revoked certificate entry');
  const serial = readInteger(serialTlv);
  if (extsTlv) {
    for (const ext of readExtensions(extsTlv)) {
      if (ext.oid === OID.certificateIssuer) defects.push('indirect CRLs (certificateIssuer entries) are not supported');
      else if (ext.critical && !ENTRY_EXTENSIONS.has(ext.oid)) defects.push(`unsupported critical CRL entry extension ${ext.oid}`);
    }
  }
  return { serialHex: normalizeSerialHex(serial.hex), revocationDate: readTime(dateTlv) };
}

function readExtensions(t: Tlv): { oid: string; critical: boolean; value: Uint8Array }[] {
  if (t.tag !== TAG.SEQUENCE) throw new DerError('Extensions must be a SEQUENCE');
  return childrenOf(t).map((e) => {
    const kids = childrenOf(e);
    let k = 1;
    let critical = false;
    if (kids[k]?.tag === TAG.BOOLEAN) critical = readBoolean(kids[k++]);
    const value = readOctetString(need(kids[k]));
    return { oid: readOid(need(kids[0])), critical, value };
  });
}

/** Serial hex as the registry compares it: lowercase, leading zeros and an optional `0x` dropped. */
export function normalizeSerialHex(hex: string): string {
  const s = hex.trim().toLowerCase().replace(/^0x/, '').replace(/^0+/, '');
  return s === '' ? '0' : s;
}

export type CrlCheck =
  | { ok: true; revokedSerials: string[] }
  | { ok: false; reason: DenyReason; message: string };

/**
 * Checks that `crl` was issued and signed by `issuer` and is usable (RFC 5280 6.3.3 (b), (f), (g)):
 * same issuer name, matching key identifier, cRLSign when keyUsage is present, a strong and valid
 * signature and no unsupported critical extension. Returns the revoked serials when it is.
 */
export function verifyCrlSignature(
  crl: ParsedCrl,
  issuer: ParsedCertificate,
  options: { requireCrlNumber?: boolean } = {},
): CrlCheck {
  if (crl.issuerName.key !== issuer.subjectName.key) {
    return { ok: false, reason: 'SIGNATURE_INVALID', message: `CRL issuer "${crl.issuer}" is not "${issuer.subject}"` };
  }
  if (crl.authorityKeyId && issuer.subjectKeyId && crl.authorityKeyId !== issuer.subjectKeyId) {
    return { ok: false, reason: 'SIGNATURE_INVALID', message: 'CRL authorityKeyIdentifier does not match the CA subjectKeyIdentifier' };
  }
  if (issuer.keyUsage && !issuer.keyUsage.has('cRLSign')) {
    return { ok: false, reason: 'KEY_USAGE_INVALID', message: `CA "${issuer.subject}" keyUsage does not include cRLSign (RFC 5280 6.3.3 (f))` };
  }
  const weak = checkSignatureStrength(crl.signatureAlgorithm);
  if (weak) return { ok: false, reason: 'WEAK_SIGNATURE_ALGORITHM', message: `CRL: ${weak.message}` };
  const key = publicKeyOf(issuer);
  if (!key || !verifySignature(crl.tbs, crl.signature, crl.signatureAlgorithm, key)) {
    return { ok: false, reason: 'SIGNATURE_INVALID', message: `CRL signature does not verify with the key of "${issuer.subject}"` };
  }
  const defects = options.requireCrlNumber === false ? crl.defects.filter((d) => d !== MISSING_CRL_NUMBER) : crl.defects;
  if (defects.length) return { ok: false, reason: 'MALFORMED_CERTIFICATE', message: `CRL unusable: ${defects.join('; ')}` };
  return { ok: true, revokedSerials: crl.revoked.map((r) => r.serialHex) };
}
