/**
 * The pieces of an X.509 v3 certificate (RFC 5280) that certgate writes: names, validity,
 * serial numbers and extensions, encoded with asn1js/pkijs; and the few facts it reads back
 * from an issuer certificate.
 */
import { createHash, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { CertsError } from './certs-errors.js';
import { KEY_USAGE_BITS, type KeyUsage } from '../pki/extensions.js';

export const OIDS = {
  commonName: '2.5.4.3',
  country: '2.5.4.6',
  locality: '2.5.4.7',
  state: '2.5.4.8',
  organization: '2.5.4.10',
  organizationalUnit: '2.5.4.11',
  email: '1.2.840.113549.1.9.1',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

const SHORT_NAMES: Record<string, string> = {
  [OIDS.commonName]: 'CN',
  [OIDS.country]: 'C',
  [OIDS.locality]: 'L',
  [OIDS.state]: 'ST',
  [OIDS.organization]: 'O',
  [OIDS.organizationalUnit]: 'OU',
  [OIDS.email]: 'emailAddress',
};

// ---------------------------------------------------------------------------------------------
// Names

export interface SubjectSpec {
  cn: string;
  org?: string;
  orgUnit?: string;
  country?: string;
  state?: string;
  locality?: string;
}

/**
 * Distinguished name DER, one attribute per RDN, most general first (C, ST, L, O, OU, CN) as
 * OpenSSL writes them. countryName is a PrintableString of two letters (RFC 5280 A.1,
 * X520countryName); the rest are UTF8String (RFC 5280 4.1.2.6: MUST for new certificates).
 *
 * Built by hand because pkijs, for a name it did not parse, puts every attribute into one
 * multi-valued RDN.
 */
export function encodeName(spec: SubjectSpec): Uint8Array {
  if (!spec.cn || !spec.cn.trim()) throw new CertsError('INVALID_OPTION', 'a common name (CN) is required');
  if (spec.cn.length > 64) throw new CertsError('INVALID_OPTION', 'the common name is longer than 64 characters (RFC 5280 ub-common-name)');
  const attrs: Array<[string, asn1js.BaseBlock]> = [];
  if (spec.country !== undefined) {
    if (!/^[A-Za-z]{2}$/.test(spec.country)) {
      throw new CertsError('INVALID_OPTION', `country "${spec.country}" is not a two-letter ISO 3166 code`);
    }
    attrs.push([OIDS.country, new asn1js.PrintableString({ value: spec.country.toUpperCase() })]);
  }
  const utf8 = (oid: string, v: string | undefined) => {
    if (v !== undefined && v !== '') attrs.push([oid, new asn1js.Utf8String({ value: v })]);
  };
  utf8(OIDS.state, spec.state);
  utf8(OIDS.locality, spec.locality);
  utf8(OIDS.organization, spec.org);
  utf8(OIDS.organizationalUnit, spec.orgUnit);
  utf8(OIDS.commonName, spec.cn);
  const seq = new asn1js.Sequence({
    value: attrs.map(
      ([oid, value]) =>
        new asn1js.Set({ value: [new asn1js.Sequence({ value: [new asn1js.ObjectIdentifier({ value: oid }), value] })] }),
    ),
  });
  return new Uint8Array(seq.toBER(false));
}

/** A pkijs name that re-encodes to exactly `der` (pkijs keeps `valueBeforeDecode`). */
export function nameFromDer(der: Uint8Array): pkijs.RelativeDistinguishedNames {
  return new pkijs.RelativeDistinguishedNames({ schema: fromDer(der, 'name') });
}

/** RFC 4514 text, most specific RDN first: `CN=dev1,O=Acme,C=US`. */
export function nameToText(name: pkijs.RelativeDistinguishedNames): string {
  const parts = name.typesAndValues.map((tv) => {
    const key = SHORT_NAMES[tv.type] ?? tv.type;
    const block = tv.value as { valueBlock?: { value?: unknown } };
    const v = typeof block.valueBlock?.value === 'string' ? block.valueBlock.value : '#';
    return `${key}=${v.replace(/([,+"\\<>;])/g, '\\$1')}`;
  });
  return parts.reverse().join(',');
}

// ---------------------------------------------------------------------------------------------
// Serial numbers and time

/**
 * 16 random bytes, positive and minimally encoded: RFC 5280 4.1.2.2 asks for a positive integer
 * of at most 20 octets; CA/B Forum BR 7.1 for at least 64 bits of randomness.
 */
export function randomSerial(): Uint8Array {
  const b = new Uint8Array(randomBytes(16));
  b[0] = (b[0]! & 0x7f) || 0x01;
  return b;
}

/** Hex serial as people and `openssl x509 -serial` show it: uppercase, no leading zero octets. */
export function serialToHex(serial: Uint8Array): string {
  let i = 0;
  while (i < serial.length - 1 && serial[i] === 0) i++;
  return Buffer.from(serial.subarray(i)).toString('hex').toUpperCase();
}

export function serialFromHex(hex: string): Uint8Array {
  const clean = hex.replace(/^0x/i, '').replace(/:/g, '');
  if (!/^[0-9a-fA-F]{1,40}$/.test(clean)) throw new CertsError('INVALID_OPTION', `serial number "${hex}" is not hex`);
  let bytes = Buffer.from(clean.length % 2 ? `0${clean}` : clean, 'hex');
  // Keep it positive: a leading 1 bit would make the DER INTEGER negative.
  if (bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return new Uint8Array(bytes);
}

/**
 * RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, whole seconds only
 * (asn1js would otherwise write fractional seconds into a GeneralizedTime, which DER forbids).
 */
export function x509Time(date: Date): pkijs.Time {
  const whole = new Date(Math.floor(date.getTime() / 1000) * 1000);
  return new pkijs.Time({ type: whole.getUTCFullYear() < 2050 ? 0 : 1, value: whole });
}

// ---------------------------------------------------------------------------------------------
// Extensions

/** The KeyUsage names and their bit order (RFC 5280 4.2.1.3), shared with the parser. */
export type KeyUsageName = KeyUsage;
export { KEY_USAGE_BITS };

export type SanEntry =
  | { type: 'dns'; value: string }
  | { type: 'ip'; value: string }
  | { type: 'uri'; value: string }
  | { type: 'email'; value: string };

/** An extension given as raw DER, for tests that need something certgate does not model. */
export interface RawExtension {
  oid: string;
  critical?: boolean;
  /** DER of the extension value (the contents of extnValue's OCTET STRING). */
  value: Uint8Array;
}

function ext(extnID: string, critical: boolean, value: asn1js.BaseBlock | Uint8Array): pkijs.Extension {
  const der = value instanceof Uint8Array ? value : new Uint8Array(value.toBER(false));
  return new pkijs.Extension({ extnID, critical, extnValue: toArrayBuffer(der) });
}

/** RFC 5280 4.2.1.9. `cA` DEFAULT FALSE is omitted when false, as DER requires. */
export function basicConstraintsExtension(ca: boolean, pathLen: number | undefined, critical: boolean): pkijs.Extension {
  const value: asn1js.BaseBlock[] = [];
  if (ca) value.push(new asn1js.Boolean({ value: true }));
  if (ca && pathLen !== undefined) value.push(new asn1js.Integer({ value: pathLen }));
  return ext(OIDS.basicConstraints, critical, new asn1js.Sequence({ value }));
}

/** RFC 5280 4.2.1.3: a named BIT STRING, trailing zero bits dropped (X.690 11.2.2). */
export function keyUsageExtension(usages: readonly KeyUsageName[], critical: boolean): pkijs.Extension {
  let mask = 0;
  for (const u of usages) {
    const bit = KEY_USAGE_BITS.indexOf(u);
    if (bit < 0) throw new CertsError('INVALID_OPTION', `unknown key usage "${u}"`);
    mask |= 1 << bit;
  }
  if (mask === 0) throw new CertsError('INVALID_OPTION', 'keyUsage needs at least one usage');
  const highest = 31 - Math.clz32(mask);
  const bytes = new Uint8Array(highest < 8 ? 1 : 2);
  for (let bit = 0; bit <= highest; bit++) {
    if (mask & (1 << bit)) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  }
  const unusedBits = bytes.length * 8 - 1 - highest;
  return ext(OIDS.keyUsage, critical, new asn1js.BitString({ valueHex: toArrayBuffer(bytes), unusedBits }));
}

const EKU_NAMES: Record<string, string> = {
  serverAuth: OIDS.serverAuth,
  clientAuth: OIDS.clientAuth,
  codeSigning: '1.3.6.1.5.5.7.3.3',
  emailProtection: '1.3.6.1.5.5.7.3.4',
  timeStamping: '1.3.6.1.5.5.7.3.8',
  ocspSigning: '1.3.6.1.5.5.7.3.9',
  anyExtendedKeyUsage: '2.5.29.37.0',
};

/** RFC 5280 4.2.1.12; names (`serverAuth`, `clientAuth`, ...) or dotted OIDs. */
export function extKeyUsageExtension(usages: readonly string[], critical = false): pkijs.Extension {
  const oids = usages.map((u) => {
    const oid = EKU_NAMES[u] ?? u;
    if (!/^\d+(\.\d+)+$/.test(oid)) throw new CertsError('INVALID_OPTION', `unknown extended key usage "${u}"`);
    return new asn1js.ObjectIdentifier({ value: oid });
  });
  return ext(OIDS.extKeyUsage, critical, new asn1js.Sequence({ value: oids }));
}

/** RFC 5280 4.2.1.6. Critical only when the subject is empty, which certgate never makes. */
export function subjectAltNameExtension(entries: readonly SanEntry[]): pkijs.Extension {
  const names = entries.map((e) => {
    switch (e.type) {
      case 'dns':
        if (!/^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?)*\.?$/.test(e.value)) {
          throw new CertsError('INVALID_OPTION', `"${e.value}" is not a DNS name`);
        }
        return new pkijs.GeneralName({ type: 2, value: e.value });
      case 'ip':
        return new pkijs.GeneralName({ type: 7, value: new asn1js.OctetString({ valueHex: toArrayBuffer(ipToBytes(e.value)) }) });
      case 'uri':
        if (!/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(e.value) || /[^\x21-\x7e]/.test(e.value)) {
          throw new CertsError('INVALID_OPTION', `"${e.value}" is not an ASCII URI`);
        }
        return new pkijs.GeneralName({ type: 6, value: e.value });
      case 'email':
        if (!/^[^@\s]+@[^@\s]+$/.test(e.value)) throw new CertsError('INVALID_OPTION', `"${e.value}" is not an e-mail address`);
        return new pkijs.GeneralName({ type: 1, value: e.value });
      default:
        throw new CertsError('INVALID_OPTION', `unknown SAN type "${(e as { type: string }).type}"`);
    }
  });
  return ext(OIDS.subjectAltName, false, new pkijs.GeneralNames({ names }).toSchema());
}

/** RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's value. */
export function keyIdentifier(spki: Uint8Array): Uint8Array {
  const info = new pkijs.PublicKeyInfo({ schema: fromDer(spki, 'public key') });
  return new Uint8Array(createHash('sha1').update(info.subjectPublicKey.valueBlock.valueHexView).digest());
}

export function subjectKeyIdentifierExtension(keyId: Uint8Array): pkijs.Extension {
  return ext(OIDS.subjectKeyIdentifier, false, new asn1js.OctetString({ valueHex: toArrayBuffer(keyId) }));
}

/** RFC 5280 4.2.1.1: keyIdentifier only, copied from the issuer's SKI. */
export function authorityKeyIdentifierExtension(keyId: Uint8Array): pkijs.Extension {
  const aki = new pkijs.AuthorityKeyIdentifier({ keyIdentifier: new asn1js.OctetString({ valueHex: toArrayBuffer(keyId) }) });
  return ext(OIDS.authorityKeyIdentifier, false, aki.toSchema());
}

export function rawExtension(e: RawExtension): pkijs.Extension {
  return ext(e.oid, e.critical ?? false, e.value);
}

// ---------------------------------------------------------------------------------------------
// Reading an issuer certificate

export interface CertificateFacts {
  der: Uint8Array;
  subjectDer: Uint8Array;
  issuerDer: Uint8Array;
  subject: string;
  issuer: string;
  serialNumberHex: string;
  notBefore: Date;
  notAfter: Date;
  version: number;
  /** basicConstraints cA (false when the extension is absent). */
  isCa: boolean;
  pathLen?: number;
  /** keyUsage names, or undefined when the extension is absent. */
  keyUsage?: KeyUsageName[];
  subjectKeyIdentifier?: Uint8Array;
  publicKey: KeyObject;
  spki: Uint8Array;
  selfIssued: boolean;
}

export function readCertificate(der: Uint8Array, what = 'certificate'): CertificateFacts {
  let cert: pkijs.Certificate;
  try {
    cert = pkijs.Certificate.fromBER(der);
  } catch {
    throw new CertsError('CERTIFICATE_UNREADABLE', `${what} is not a readable X.509 certificate`);
  }
  const spki = new Uint8Array(cert.subjectPublicKeyInfo.toSchema().toBER(false));
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  } catch {
    throw new CertsError('CERTIFICATE_UNREADABLE', `${what} has a public key Node cannot read`);
  }
  const facts: CertificateFacts = {
    der,
    subjectDer: new Uint8Array(cert.subject.toSchema().toBER(false)),
    issuerDer: new Uint8Array(cert.issuer.toSchema().toBER(false)),
    subject: nameToText(cert.subject),
    issuer: nameToText(cert.issuer),
    serialNumberHex: serialToHex(cert.serialNumber.valueBlock.valueHexView),
    notBefore: cert.notBefore.value,
    notAfter: cert.notAfter.value,
    version: cert.version + 1,
    isCa: false,
    publicKey,
    spki,
    selfIssued: false,
  };
  facts.selfIssued = Buffer.from(facts.subjectDer).equals(Buffer.from(facts.issuerDer));
  for (const e of cert.extensions ?? []) {
    const value = e.extnValue.valueBlock.valueHexView;
    if (e.extnID === OIDS.basicConstraints) {
      const bc = new pkijs.BasicConstraints({ schema: fromDer(value, 'basicConstraints') });
      facts.isCa = bc.cA === true;
      if (bc.pathLenConstraint !== undefined) {
        const p = bc.pathLenConstraint;
        facts.pathLen = typeof p === 'number' ? p : p.valueBlock.valueDec;
      }
    } else if (e.extnID === OIDS.keyUsage) {
      const bits = fromDer(value, 'keyUsage') as asn1js.BitString;
      const bytes = bits.valueBlock.valueHexView;
      facts.keyUsage = KEY_USAGE_BITS.filter((_, i) => ((bytes[i >> 3] ?? 0) & (0x80 >> (i & 7))) !== 0);
    } else if (e.extnID === OIDS.subjectKeyIdentifier) {
      const os = fromDer(value, 'subjectKeyIdentifier') as asn1js.OctetString;
      facts.subjectKeyIdentifier = new Uint8Array(os.valueBlock.valueHexView);
    }
  }
  return facts;
}

// ---------------------------------------------------------------------------------------------
// Helpers

export function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy.buffer;
}

function fromDer(bytes: Uint8Array, what: string): asn1js.AsnType {
  const parsed = asn1js.fromBER(toArrayBuffer(bytes));
  if (parsed.offset === -1) throw new CertsError('CERTIFICATE_UNREADABLE', `malformed ${what}`);
  return parsed.result;
}

/** IPv4 or IPv6 text to its 4 or 16 octets (RFC 5280 4.2.1.6 iPAddress). */
export function ipToBytes(ip: string): Uint8Array {
  const kind = isIP(ip);
  if (kind === 4) return new Uint8Array(ip.split('.').map(Number));
  if (kind !== 6) throw new CertsError('INVALID_OPTION', `"${ip}" is not an IP address`);
  // Rewrite an embedded IPv4 tail (`::ffff:192.0.2.1`) as two hex groups, then expand `::`.
  const text = ip
    .replace(/%.*$/, '')
    .replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) =>
      [((+a << 8) | +b).toString(16), ((+c << 8) | +d).toString(16)].join(':'),
    );
  const parse = (s: string) => (s ? s.split(':').map((h) => parseInt(h, 16)) : []);
  const [head = '', rest] = text.split('::');
  const left = parse(head);
  const right = rest === undefined ? [] : parse(rest);
  const groups = rest === undefined ? left : [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
  const out = new Uint8Array(16);
  groups.slice(0, 8).forEach((g, i) => {
    out[i * 2] = (g >> 8) & 0xff;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}
