/**
 * Distinguished names (RFC 5280 4.1.2.4) and GeneralNames (RFC 5280 4.2.1.6).
 */
import {
  DerError,
  TAG,
  childrenOf,
  decodeOid,
  encodingOf,
  explicitInner,
  isStringTag,
  latin1,
  readOid,
  readString,
  readTlv,
  toHex,
  valueOf,
  type Tlv,
} from './der.js';
import { OID } from './oids.js';

export interface Attribute {
  readonly oid: string;
  /** Decoded value when it is a directory string, else null. */
  readonly value: string | null;
  /** The value's full DER encoding. */
  readonly valueDer: Uint8Array;
}

export type Rdn = readonly Attribute[];

export interface Name {
  readonly der: Uint8Array;
  readonly rdns: readonly Rdn[];
  /** RFC 4514 string, most specific RDN first: `CN=dev1,O=Acme`. */
  readonly text: string;
  /**
   * Comparison key following RFC 5280 7.1 in a simplified RFC 4518 form: string values are
   * compared case-insensitively with insignificant spaces removed, whatever their string type.
   */
  readonly key: string;
}

const SHORT_NAMES: Readonly<Record<string, string>> = {
  '2.5.4.3': 'CN',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '2.5.4.9': 'STREET',
  '0.9.2342.19200300.100.1.25': 'DC',
  '0.9.2342.19200300.100.1.1': 'UID',
  '2.5.4.5': 'serialNumber',
  '2.5.4.4': 'SN',
  '2.5.4.42': 'GN',
  '2.5.4.12': 'title',
  '2.5.4.43': 'initials',
  '2.5.4.46': 'dnQualifier',
  '2.5.4.65': 'pseudonym',
  '2.5.4.17': 'postalCode',
  '2.5.4.15': 'businessCategory',
  '2.5.4.97': 'organizationIdentifier',
  [OID.emailAddress]: 'emailAddress',
};

export function parseName(t: Tlv): Name {
  if (t.tag !== TAG.SEQUENCE) throw new DerError('Name must be a SEQUENCE');
  const rdns: Rdn[] = [];
  for (const set of childrenOf(t)) {
    if (set.tag !== TAG.SET) throw new DerError('RDN must be a SET');
    const attrs: Attribute[] = [];
    for (const atv of childrenOf(set)) {
      if (atv.tag !== TAG.SEQUENCE) throw new DerError('attribute must be a SEQUENCE');
      const [type, value, ...extra] = childrenOf(atv);
      if (!type || !value || extra.length) throw new DerError('bad attribute');
      attrs.push({
        oid: readOid(type),
        value: isStringTag(value.tag) ? readString(value) : null,
        valueDer: encodingOf(value),
      });
    }
    if (attrs.length === 0) throw new DerError('empty RDN');
    rdns.push(attrs);
  }
  return { der: encodingOf(t), rdns, text: nameToString(rdns), key: nameKey(rdns) };
}

export function isEmptyName(name: Name): boolean {
  return name.rdns.length === 0;
}

/** Values of one attribute type, in encoding order (e.g. every CN). */
export function attributeValues(name: Name, oid: string): string[] {
  const out: string[] = [];
  for (const rdn of name.rdns) for (const a of rdn) if (a.oid === oid && a.value !== null) out.push(a.value);
  return out;
}

function nameToString(rdns: readonly Rdn[]): string {
  const parts: string[] = [];
  for (let i = rdns.length - 1; i >= 0; i--) {
    parts.push(rdns[i].map(attributeToString).join('+'));
  }
  return parts.join(',');
}

function attributeToString(a: Attribute): string {
  const short = SHORT_NAMES[a.oid];
  if (short && a.value !== null) return `${short}=${escapeValue(a.value)}`;
  return `${a.oid}=#${toHex(a.valueDer)}`;
}

/** RFC 4514 2.4 escaping. */
function escapeValue(v: string): string {
  let out = '';
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (c === '\0') out += '\\00';
    else if (',+"\\<>;'.includes(c)) out += '\\' + c;
    else if ((i === 0 && (c === ' ' || c === '#')) || (i === v.length - 1 && c === ' ')) out += '\\' + c;
    else out += c;
  }
  return out;
}

function normalizeValue(a: Attribute): string {
  if (a.value === null) return '#' + toHex(a.valueDer);
  // NFKC only matters beyond ASCII; skipping it for plain ASCII keeps parsing cheap.
  const v = /^[\x20-\x7e]*$/.test(a.value) ? a.value : a.value.normalize('NFKC');
  return v.trim().replace(/\s+/g, ' ').toLowerCase();
}

export function rdnKey(rdn: Rdn): string {
  return rdn
    .map((a) => `${a.oid}=${JSON.stringify(normalizeValue(a))}`)
    .sort()
    .join('+');
}

function nameKey(rdns: readonly Rdn[]): string {
  return rdns.map(rdnKey).join(',');
}

// ---------------------------------------------------------------------------------------------
// GeneralName (RFC 5280 4.2.1.6)

export type GeneralName =
  | { readonly type: 'otherName'; readonly oid: string }
  | { readonly type: 'email'; readonly value: string }
  | { readonly type: 'dns'; readonly value: string }
  | { readonly type: 'x400' }
  | { readonly type: 'dirName'; readonly name: Name }
  | { readonly type: 'ediParty' }
  | { readonly type: 'uri'; readonly value: string }
  | { readonly type: 'ip'; readonly bytes: Uint8Array; readonly value: string }
  | { readonly type: 'registeredId'; readonly oid: string };

export type GeneralNameType = GeneralName['type'];

export function parseGeneralName(t: Tlv): GeneralName {
  if (t.cls !== 0x80) throw new DerError('GeneralName must be context-tagged');
  switch (t.num) {
    case 0: {
      const kids = childrenOf(t);
      if (kids.length !== 2) throw new DerError('bad otherName');
      return { type: 'otherName', oid: readOid(kids[0]) };
    }
    case 1:
      return { type: 'email', value: ia5(t) };
    case 2:
      return { type: 'dns', value: ia5(t) };
    case 3:
      return { type: 'x400' };
    case 4:
      return { type: 'dirName', name: parseName(explicitInner(t)) };
    case 5:
      return { type: 'ediParty' };
    case 6:
      return { type: 'uri', value: ia5(t) };
    case 7: {
      if (t.constructed) throw new DerError('bad iPAddress');
      const bytes = valueOf(t);
      return { type: 'ip', bytes, value: formatIp(bytes) };
    }
    case 8:
      if (t.constructed) throw new DerError('bad registeredID');
      return { type: 'registeredId', oid: decodeOid(valueOf(t)) };
    default:
      throw new DerError('unknown GeneralName choice');
  }
}

/** A SEQUENCE OF GeneralName (SAN, IAN, AKI authorityCertIssuer). */
export function parseGeneralNames(t: Tlv): GeneralName[] {
  return childrenOf(t).map(parseGeneralName);
}

function ia5(t: Tlv): string {
  if (t.constructed) throw new DerError('IA5String must be primitive');
  const v = valueOf(t);
  for (const b of v) if (b > 0x7f) throw new DerError('IA5String with non-ASCII octet');
  return latin1(v);
}

/** IPv4 dotted quad, IPv6 in RFC 5952 form; other lengths (e.g. CIDR in a SAN) in hex. */
export function formatIp(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join('.');
  if (b.length === 16) return formatIpv6(b);
  if (b.length === 8) return `${formatIp(b.subarray(0, 4))}/${maskBits(b.subarray(4))}`;
  if (b.length === 32) return `${formatIp(b.subarray(0, 16))}/${maskBits(b.subarray(16))}`;
  return toHex(b);
}

function formatIpv6(b: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((b[i] << 8) | b[i + 1]);
  // Longest run of zero words (length >= 2) collapses to "::".
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Prefix length of a contiguous netmask, or -1 if the mask is not contiguous. */
export function maskBits(mask: Uint8Array): number {
  let bits = 0;
  let seenZero = false;
  for (const byte of mask) {
    for (let i = 7; i >= 0; i--) {
      const one = (byte >> i) & 1;
      if (one) {
        if (seenZero) return -1;
        bits++;
      } else {
        seenZero = true;
      }
    }
  }
  return bits;
}

/** Reads a Name from raw DER (used for CRL issuers and tests). */
export function parseNameDer(der: Uint8Array): Name {
  const t = readTlv(der, 0, der.length);
  if (t.end !== der.length) throw new DerError('trailing data after Name');
  return parseName(t);
}
