/**
 * A small, strict DER reader for the fixed structures of X.509 (certificates, CRLs, extensions).
 *
 * Why not asn1js/pkijs for parsing: measured on Node 24 here, `asn1js.fromBER` costs ~100 µs and
 * `pkijs.Certificate.fromBER` ~220 µs per certificate, while walking the known structure by hand
 * costs a few µs. Hostile input must never escape as anything but `DerError`: every read is
 * bounds-checked against its enclosing element, indefinite and non-minimal lengths are refused
 * (DER, X.690 10.1), and the reader never recurses on its own, so nesting depth is decided by the
 * callers.
 */

export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

/** Tag classes (X.690 8.1.2.2), pre-shifted as they appear in the identifier octet. */
export const CLASS_UNIVERSAL = 0x00;
export const CLASS_CONTEXT = 0x80;

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  SEQUENCE: 0x30,
  SET: 0x31,
  NUMERIC_STRING: 0x12,
  PRINTABLE_STRING: 0x13,
  TELETEX_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  VISIBLE_STRING: 0x1a,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
} as const;

/** One decoded element: positions are absolute offsets into `buf`. */
export interface Tlv {
  readonly buf: Uint8Array;
  /** Class bits (0x00, 0x40, 0x80, 0xc0). */
  readonly cls: number;
  readonly constructed: boolean;
  /** Tag number within its class. */
  readonly num: number;
  /** Identifier octet for low tag numbers (class | constructed | number), -1 for high tag numbers. */
  readonly tag: number;
  readonly start: number;
  readonly valueStart: number;
  readonly end: number;
}

/** Reads one element at `pos`, which must end at or before `limit`. */
export function readTlv(buf: Uint8Array, pos: number, limit: number = buf.length): Tlv {
  if (pos >= limit) throw new DerError('unexpected end of data');
  const first = buf[pos];
  const cls = first & 0xc0;
  const constructed = (first & 0x20) !== 0;
  let num = first & 0x1f;
  let p = pos + 1;
  let tag = first;
  if (num === 0x1f) {
    // High tag number form (X.690 8.1.2.4); X.509 never needs more than a few octets.
    num = 0;
    for (let i = 0; ; i++) {
      if (p >= limit || i > 3) throw new DerError('bad tag');
      const b = buf[p++];
      num = num * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) break;
    }
    tag = -1;
  }
  if (p >= limit) throw new DerError('missing length');
  let len = buf[p++];
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw new DerError('indefinite length is not DER');
    if (n > 4) throw new DerError('length too large');
    if (p < limit && buf[p] === 0) throw new DerError('length is not minimally encoded');
    len = 0;
    for (let i = 0; i < n; i++) {
      if (p >= limit) throw new DerError('truncated length');
      len = len * 256 + buf[p++];
    }
    // X.690 10.1: the fewest length octets, so the long form only from 128 on. A longer form would
    // give one signed certificate many encodings, and so many SHA-256 fingerprints.
    if (len < 0x80) throw new DerError('length is not minimally encoded');
  }
  const end = p + len;
  if (end > limit) throw new DerError('element exceeds its container');
  return { buf, cls, constructed, num, tag, start: pos, valueStart: p, end };
}

/** The element's contents (no copy). */
export function valueOf(t: Tlv): Uint8Array {
  return t.buf.subarray(t.valueStart, t.end);
}

/** The element's full encoding, identifier and length included (no copy). */
export function encodingOf(t: Tlv): Uint8Array {
  return t.buf.subarray(t.start, t.end);
}

/** Reads a single element spanning exactly the whole buffer (no trailing data). */
export function readWhole(buf: Uint8Array): Tlv {
  const t = readTlv(buf, 0, buf.length);
  if (t.end !== buf.length) throw new DerError('trailing data after element');
  return t;
}

/** The children of a constructed element, in order. */
export function childrenOf(t: Tlv): Tlv[] {
  if (!t.constructed) throw new DerError('expected a constructed element');
  const out: Tlv[] = [];
  let p = t.valueStart;
  while (p < t.end) {
    const c = readTlv(t.buf, p, t.end);
    out.push(c);
    p = c.end;
  }
  return out;
}

export function expectTag(t: Tlv, tag: number, what: string): Tlv {
  if (t.tag !== tag) throw new DerError(`${what}: unexpected tag 0x${t.tag.toString(16)}`);
  return t;
}

export function isContext(t: Tlv, num: number): boolean {
  return t.cls === CLASS_CONTEXT && t.num === num;
}

/** The single element inside an EXPLICIT context tag. */
export function explicitInner(t: Tlv): Tlv {
  const kids = childrenOf(t);
  if (kids.length !== 1) throw new DerError('explicit tag must wrap exactly one element');
  return kids[0];
}

export function readOid(t: Tlv): string {
  if (t.tag !== TAG.OID) throw new DerError('expected an OBJECT IDENTIFIER');
  return decodeOid(valueOf(t));
}

const oidCache = new Map<string, string>();

/**
 * Dotted form of an OID's contents (X.690 8.19). Certificates repeat a few dozen OIDs, so results
 * are memoised by their encoding (bounded), which keeps parsing cheap.
 */
export function decodeOid(v: Uint8Array): string {
  if (v.length === 0 || v.length > 128) throw new DerError('bad OID length');
  const key = v.length <= 32 ? latin1(v) : null;
  if (key !== null) {
    const hit = oidCache.get(key);
    if (hit !== undefined) return hit;
  }
  const oid = decodeOidArcs(v);
  if (key !== null) {
    if (oidCache.size >= 4096) oidCache.clear();
    oidCache.set(key, oid);
  }
  return oid;
}

function decodeOidArcs(v: Uint8Array): string {
  const arcs: string[] = [];
  let acc = 0;
  let big: bigint | null = null;
  let first = true;
  for (let i = 0; i < v.length; i++) {
    const b = v[i];
    if (big === null && acc > 2 ** 45) big = BigInt(acc);
    if (big !== null) big = big * 128n + BigInt(b & 0x7f);
    else acc = acc * 128 + (b & 0x7f);
    if (b & 0x80) {
      if (i === v.length - 1) throw new DerError('truncated OID');
      continue;
    }
    const value: number | bigint = big !== null ? big : acc;
    if (first) {
      // The first subidentifier packs two arcs: 40 * X + Y with X in 0..2 (X.690 8.19.4).
      if (typeof value === 'number') {
        const x = value < 40 ? 0 : value < 80 ? 1 : 2;
        arcs.push(String(x), String(value - x * 40));
      } else {
        arcs.push('2', (value - 80n).toString());
      }
      first = false;
    } else {
      arcs.push(value.toString());
    }
    acc = 0;
    big = null;
  }
  return arcs.join('.');
}

export interface DerInteger {
  /** Two's-complement content octets as lowercase hex, exactly as encoded. */
  hex: string;
  negative: boolean;
  zero: boolean;
  /** Number of content octets. */
  length: number;
}

export function readInteger(t: Tlv): DerInteger {
  if (t.tag !== TAG.INTEGER) throw new DerError('expected an INTEGER');
  const v = valueOf(t);
  if (v.length === 0) throw new DerError('empty INTEGER');
  // X.690 8.3.2: the shortest encoding; OpenSSL (and so every TLS peer) refuses longer ones.
  if (v.length > 1 && ((v[0] === 0 && v[1] < 0x80) || (v[0] === 0xff && v[1] >= 0x80))) {
    throw new DerError('INTEGER is not minimally encoded');
  }
  return {
    hex: toHex(v),
    negative: (v[0] & 0x80) !== 0,
    zero: v.every((b) => b === 0),
    length: v.length,
  };
}

/** A small non-negative INTEGER as a JS number (path lengths, versions, CRL numbers' size check). */
export function readSmallInt(t: Tlv): number {
  if (t.tag !== TAG.INTEGER) throw new DerError('expected an INTEGER');
  const v = valueOf(t);
  if (v.length === 0 || v.length > 6) throw new DerError('INTEGER out of range');
  if (v[0] & 0x80) throw new DerError('negative INTEGER');
  let n = 0;
  for (const b of v) n = n * 256 + b;
  return n;
}

export function readBoolean(t: Tlv): boolean {
  if (t.tag !== TAG.BOOLEAN) throw new DerError('expected a BOOLEAN');
  const v = valueOf(t);
  if (v.length !== 1) throw new DerError('bad BOOLEAN');
  return v[0] !== 0;
}

export interface BitString {
  unusedBits: number;
  bytes: Uint8Array;
}

export function readBitString(t: Tlv): BitString {
  if (t.tag !== TAG.BIT_STRING) throw new DerError('expected a BIT STRING');
  const v = valueOf(t);
  if (v.length === 0) throw new DerError('empty BIT STRING');
  const unusedBits = v[0];
  if (unusedBits > 7 || (v.length === 1 && unusedBits !== 0)) throw new DerError('bad BIT STRING');
  // X.690 11.2.1: unused bits are zero. Reading them would find keyUsage bits (RFC 5280 4.2.1.3)
  // that OpenSSL and pkijs do not see, such as keyCertSign hidden in the padding.
  if (unusedBits && v[v.length - 1] & ((1 << unusedBits) - 1)) throw new DerError('BIT STRING has non-zero unused bits');
  return { unusedBits, bytes: v.subarray(1) };
}

export function readOctetString(t: Tlv): Uint8Array {
  if (t.tag !== TAG.OCTET_STRING) throw new DerError('expected an OCTET STRING');
  return valueOf(t);
}

/**
 * UTCTime / GeneralizedTime as used by RFC 5280 4.1.2.5: always UTC ("Z"), seconds present.
 * UTCTime years 50..99 are 19xx. Fractional seconds (not allowed by RFC 5280, seen in CRLs of
 * some tools) are truncated, which matches the granularity of the encoding.
 */
export function readTime(t: Tlv): Date {
  const v = valueOf(t);
  let p = 0;
  let year: number;
  if (t.tag === TAG.UTC_TIME) {
    if (v.length !== 13 || v[12] !== 0x5a) throw new DerError('bad UTCTime');
    const yy = digits(v, 0, 2);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
    p = 2;
  } else if (t.tag === TAG.GENERALIZED_TIME) {
    if (v.length < 15 || v[v.length - 1] !== 0x5a) throw new DerError('bad GeneralizedTime');
    year = digits(v, 0, 4);
    p = 4;
    if (v.length > 15) {
      // Fractional seconds: ".d+" before the Z.
      if (v[p + 10] !== 0x2e || v.length < 17 || v.length > 25) throw new DerError('bad GeneralizedTime');
      digits(v, p + 11, v.length - 1 - (p + 11));
    }
  } else {
    throw new DerError('expected a time');
  }
  const month = digits(v, p, 2);
  const day = digits(v, p + 2, 2);
  const hour = digits(v, p + 4, 2);
  const minute = digits(v, p + 6, 2);
  const second = digits(v, p + 8, 2);
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    throw new DerError('time out of range');
  }
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  if (date.getUTCDate() !== day) throw new DerError('no such day');
  return date;
}

function digits(v: Uint8Array, at: number, n: number): number {
  let x = 0;
  for (let i = at; i < at + n; i++) {
    const d = v[i] - 0x30;
    if (!(d >= 0 && d <= 9)) throw new DerError('bad digit in time');
    x = x * 10 + d;
  }
  return x;
}

/** Decodes the directory string types RFC 5280 allows in names and GeneralNames. */
export function readString(t: Tlv): string {
  const v = valueOf(t);
  switch (t.tag) {
    case TAG.UTF8_STRING:
      return utf8(v);
    case TAG.PRINTABLE_STRING:
    case TAG.IA5_STRING:
    case TAG.VISIBLE_STRING:
    case TAG.NUMERIC_STRING:
    case TAG.TELETEX_STRING:
      return latin1(v);
    case TAG.BMP_STRING:
      return utf16be(v);
    case TAG.UNIVERSAL_STRING:
      return utf32be(v);
    default:
      throw new DerError('not a string type');
  }
}

export function isStringTag(tag: number): boolean {
  return (
    tag === TAG.UTF8_STRING ||
    tag === TAG.PRINTABLE_STRING ||
    tag === TAG.IA5_STRING ||
    tag === TAG.VISIBLE_STRING ||
    tag === TAG.NUMERIC_STRING ||
    tag === TAG.TELETEX_STRING ||
    tag === TAG.BMP_STRING ||
    tag === TAG.UNIVERSAL_STRING
  );
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

function utf8(v: Uint8Array): string {
  try {
    return utf8Decoder.decode(v);
  } catch {
    throw new DerError('invalid UTF-8');
  }
}

export function latin1(v: Uint8Array): string {
  if (v.length <= 64) {
    let s = '';
    for (let i = 0; i < v.length; i++) s += String.fromCharCode(v[i]);
    return s;
  }
  let s = '';
  for (let i = 0; i < v.length; i += 4096) {
    s += String.fromCharCode(...v.subarray(i, Math.min(v.length, i + 4096)));
  }
  return s;
}

function utf16be(v: Uint8Array): string {
  if (v.length % 2) throw new DerError('bad BMPString');
  let s = '';
  for (let i = 0; i < v.length; i += 2) s += String.fromCharCode((v[i] << 8) | v[i + 1]);
  return s;
}

function utf32be(v: Uint8Array): string {
  if (v.length % 4) throw new DerError('bad UniversalString');
  let s = '';
  for (let i = 0; i < v.length; i += 4) {
    const cp = ((v[i] << 24) | (v[i + 1] << 16) | (v[i + 2] << 8) | v[i + 3]) >>> 0;
    if (cp > 0x10ffff) throw new DerError('bad UniversalString');
    s += String.fromCodePoint(cp);
  }
  return s;
}

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function toHex(v: Uint8Array): string {
  let s = '';
  for (let i = 0; i < v.length; i++) s += HEX[v[i]];
  return s;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
