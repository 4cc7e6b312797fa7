/**
 * Certificate extensions (RFC 5280 4.2): decoding of the ones certgate processes, and the
 * profile defects each can carry (malformed contents, wrong criticality, inconsistent pairs).
 */
import type { DenyReason } from './reasons.js';
import {
  DerError,
  TAG,
  childrenOf,
  isContext,
  readBitString,
  readBoolean,
  readOid,
  readSmallInt,
  readTlv,
  toHex,
  valueOf,
  type Tlv,
} from './der.js';
import { maskBits, parseGeneralName, parseGeneralNames, type GeneralName } from './names.js';
import { OID } from './oids.js';

export type KeyUsage =
  | 'digitalSignature'
  | 'nonRepudiation'
  | 'keyEncipherment'
  | 'dataEncipherment'
  | 'keyAgreement'
  | 'keyCertSign'
  | 'cRLSign'
  | 'encipherOnly'
  | 'decipherOnly';

/** Bit order of the KeyUsage BIT STRING (RFC 5280 4.2.1.3). */
export const KEY_USAGE_BITS: readonly KeyUsage[] = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
];

export interface BasicConstraints {
  readonly ca: boolean;
  readonly pathLen?: number;
  readonly critical: boolean;
}

export interface AuthorityKeyIdentifier {
  /** Lowercase hex. */
  readonly keyId?: string;
  readonly issuer?: readonly GeneralName[];
  /** Lowercase hex without leading zeros. */
  readonly serialHex?: string;
}

export interface NameConstraints {
  readonly permitted: readonly GeneralName[];
  readonly excluded: readonly GeneralName[];
  readonly critical: boolean;
}

export interface SubjectAltNames {
  readonly dns: readonly string[];
  readonly uri: readonly string[];
  readonly email: readonly string[];
  readonly ip: readonly string[];
  /** Every name in encoding order, including forms without a string view. */
  readonly all: readonly GeneralName[];
}

export interface CertificateExtensions {
  readonly basicConstraints?: BasicConstraints;
  readonly keyUsage?: ReadonlySet<KeyUsage>;
  /** Extended key usage OIDs (see `ekuName` for readable names). */
  readonly extKeyUsage?: readonly string[];
  /** Subject key identifier, lowercase hex. */
  readonly subjectKeyId?: string;
  readonly authorityKeyId?: AuthorityKeyIdentifier;
  readonly san: SubjectAltNames;
  readonly nameConstraints?: NameConstraints;
}

interface Defect {
  readonly reason: DenyReason;
  readonly message: string;
  readonly rule?: 'duplicate-extension';
}

interface RawExtension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: Uint8Array;
}

const NAMES: Readonly<Record<string, string>> = {
  [OID.basicConstraints]: 'basicConstraints',
  [OID.keyUsage]: 'keyUsage',
  [OID.extKeyUsage]: 'extendedKeyUsage',
  [OID.subjectAltName]: 'subjectAltName',
  [OID.issuerAltName]: 'issuerAltName',
  [OID.nameConstraints]: 'nameConstraints',
  [OID.subjectKeyIdentifier]: 'subjectKeyIdentifier',
  [OID.authorityKeyIdentifier]: 'authorityKeyIdentifier',
  [OID.certificatePolicies]: 'certificatePolicies',
  [OID.policyMappings]: 'policyMappings',
  [OID.policyConstraints]: 'policyConstraints',
  [OID.inhibitAnyPolicy]: 'inhibitAnyPolicy',
  [OID.cRLDistributionPoints]: 'cRLDistributionPoints',
  [OID.freshestCRL]: 'freshestCRL',
  [OID.authorityInfoAccess]: 'authorityInfoAccess',
  [OID.subjectInfoAccess]: 'subjectInfoAccess',
  [OID.subjectDirectoryAttributes]: 'subjectDirectoryAttributes',
  [OID.ctSignedCertificateTimestamps]: 'signedCertificateTimestampList',
  [OID.tlsFeature]: 'tlsFeature',
  [OID.ocspNoCheck]: 'ocspNoCheck',
};

export function extensionName(oid: string): string {
  return NAMES[oid] ?? oid;
}

/**
 * Extensions whose meaning certgate applies or which cannot change a path's validity when
 * critical. Policy constraints, policy mappings and inhibitAnyPolicy are not among them:
 * certgate does no policy-tree processing (RFC 5280 6.1.3 (d)-(f)), so a path that relies on
 * them is refused rather than silently accepted.
 */
const RECOGNIZED = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.issuerAltName,
  OID.nameConstraints,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
  OID.certificatePolicies,
  OID.cRLDistributionPoints,
  OID.freshestCRL,
  OID.authorityInfoAccess,
  OID.subjectInfoAccess,
  OID.subjectDirectoryAttributes,
  OID.ctSignedCertificateTimestamps,
  OID.ocspNoCheck,
]);

/** RFC 5280 says these MUST be non-critical (4.2.1.1, 4.2.1.2, 4.2.1.8, 4.2.1.15, 4.2.2.1, 4.2.2.2). */
const MUST_BE_NONCRITICAL = new Set<string>([
  OID.authorityKeyIdentifier,
  OID.subjectKeyIdentifier,
  OID.subjectDirectoryAttributes,
  OID.freshestCRL,
  OID.authorityInfoAccess,
  OID.subjectInfoAccess,
]);

/** RFC 5280 says these MUST be critical (4.2.1.10, 4.2.1.11, 4.2.1.14). */
const MUST_BE_CRITICAL = new Set<string>([OID.nameConstraints, OID.policyConstraints, OID.inhibitAnyPolicy]);

export function parseExtensions(raw: readonly RawExtension[]): { values: CertificateExtensions; defects: Defect[] } {
  const defects: Defect[] = [];
  const seen = new Set<string>();
  const values: {
    -readonly [K in keyof CertificateExtensions]: CertificateExtensions[K];
  } = { san: { dns: [], uri: [], email: [], ip: [], all: [] } };

  for (const ext of raw) {
    const name = extensionName(ext.oid);
    if (seen.has(ext.oid)) {
      // RFC 5280 4.2: a certificate MUST NOT include more than one instance of an extension.
      defects.push({ reason: 'MALFORMED_CERTIFICATE', message: `duplicate ${name} extension (RFC 5280 4.2)`, rule: 'duplicate-extension' });
      continue;
    }
    seen.add(ext.oid);
    if (ext.critical && !RECOGNIZED.has(ext.oid)) {
      defects.push({
        reason: 'UNKNOWN_CRITICAL_EXTENSION',
        message: `unsupported critical extension ${name} (RFC 5280 4.2)`,
      });
    }
    if (ext.critical && MUST_BE_NONCRITICAL.has(ext.oid)) {
      defects.push({ reason: 'MALFORMED_CERTIFICATE', message: `${name} must not be critical (RFC 5280 4.2)` });
    }
    if (!ext.critical && MUST_BE_CRITICAL.has(ext.oid)) {
      defects.push({
        reason: ext.oid === OID.nameConstraints ? 'NAME_CONSTRAINTS_VIOLATED' : 'MALFORMED_CERTIFICATE',
        message: `${name} must be critical (RFC 5280 4.2)`,
      });
    }
    try {
      const body = readTlv(ext.value, 0, ext.value.length);
      if (body.end !== ext.value.length) throw new DerError('trailing data');
      decodeOne(ext, body, values, defects);
    } catch (e) {
      if (!(e instanceof DerError)) throw e;
      defects.push({ reason: malformedReason(ext.oid), message: `malformed ${name} extension: ${e.message}` });
    }
  }
  addConsistencyDefects(values, defects);
  return { values, defects };
}

function malformedReason(oid: string): DenyReason {
  if (oid === OID.nameConstraints) return 'NAME_CONSTRAINTS_VIOLATED';
  if (oid === OID.extKeyUsage) return 'EXTENDED_KEY_USAGE_INVALID';
  if (oid === OID.keyUsage) return 'KEY_USAGE_INVALID';
  return 'MALFORMED_CERTIFICATE';
}

type Mutable = { -readonly [K in keyof CertificateExtensions]: CertificateExtensions[K] };

function decodeOne(ext: RawExtension, body: Tlv, v: Mutable, defects: Defect[]): void {
  switch (ext.oid) {
    case OID.basicConstraints:
      v.basicConstraints = decodeBasicConstraints(body, ext.critical);
      return;
    case OID.keyUsage: {
      const ku = decodeKeyUsage(body);
      if (ku.size === 0) defects.push({ reason: 'KEY_USAGE_INVALID', message: 'keyUsage asserts no bit (RFC 5280 4.2.1.3)' });
      v.keyUsage = ku;
      return;
    }
    case OID.extKeyUsage: {
      const oids = seqOf(body).map(readOid);
      if (oids.length === 0) {
        defects.push({ reason: 'EXTENDED_KEY_USAGE_INVALID', message: 'extendedKeyUsage lists no purpose (RFC 5280 4.2.1.12)' });
      }
      v.extKeyUsage = oids;
      return;
    }
    case OID.subjectKeyIdentifier:
      if (body.tag !== TAG.OCTET_STRING) throw new DerError('expected an OCTET STRING');
      v.subjectKeyId = toHex(valueOf(body));
      return;
    case OID.authorityKeyIdentifier:
      v.authorityKeyId = decodeAuthorityKeyId(body, defects);
      return;
    case OID.subjectAltName: {
      const all = parseGeneralNames(seq(body));
      if (all.length === 0) throw new DerError('empty subjectAltName (RFC 5280 4.2.1.6)');
      v.san = {
        dns: all.flatMap((n) => (n.type === 'dns' ? [n.value] : [])),
        uri: all.flatMap((n) => (n.type === 'uri' ? [n.value] : [])),
        email: all.flatMap((n) => (n.type === 'email' ? [n.value] : [])),
        ip: all.flatMap((n) => (n.type === 'ip' ? [n.value] : [])),
        all,
      };
      return;
    }
    case OID.nameConstraints:
      v.nameConstraints = decodeNameConstraints(body, ext.critical, defects);
      return;
    case OID.authorityInfoAccess:
    case OID.subjectInfoAccess:
      // AccessDescription SEQUENCE SIZE (1..MAX) (RFC 5280 4.2.2.1).
      if (seqOf(body).map(decodeAccessDescription).length === 0) throw new DerError('no access description');
      return;
    case OID.issuerAltName:
      parseGeneralNames(seq(body));
      return;
    case OID.certificatePolicies:
      if (seqOf(body).length === 0) throw new DerError('no policy');
      return;
    default:
      return;
  }
}

function seq(t: Tlv): Tlv {
  if (t.tag !== TAG.SEQUENCE) throw new DerError('expected a SEQUENCE');
  return t;
}

function seqOf(t: Tlv): Tlv[] {
  return childrenOf(seq(t));
}

function decodeBasicConstraints(body: Tlv, critical: boolean): BasicConstraints {
  const kids = seqOf(body);
  let k = 0;
  let ca = false;
  if (kids[k] && kids[k].tag === TAG.BOOLEAN) ca = readBoolean(kids[k++]);
  let pathLen: number | undefined;
  if (kids[k] && kids[k].tag === TAG.INTEGER) pathLen = readSmallInt(kids[k++]);
  if (k !== kids.length) throw new DerError('unexpected field');
  return pathLen === undefined ? { ca, critical } : { ca, pathLen, critical };
}

function decodeKeyUsage(body: Tlv): Set<KeyUsage> {
  const bits = readBitString(body);
  const set = new Set<KeyUsage>();
  KEY_USAGE_BITS.forEach((name, i) => {
    const byte = bits.bytes[i >> 3];
    if (byte !== undefined && (byte >> (7 - (i & 7))) & 1) set.add(name);
  });
  return set;
}

function decodeAuthorityKeyId(body: Tlv, defects: Defect[]): AuthorityKeyIdentifier {
  const out: { keyId?: string; issuer?: GeneralName[]; serialHex?: string } = {};
  for (const f of seqOf(body)) {
    if (isContext(f, 0) && !f.constructed) out.keyId = toHex(valueOf(f));
    else if (isContext(f, 1) && f.constructed) out.issuer = childrenOf(f).map(parseGeneralName);
    else if (isContext(f, 2) && !f.constructed) {
      const hex = toHex(valueOf(f)).replace(/^0+/, '');
      out.serialHex = hex === '' ? '0' : hex;
    } else throw new DerError('unexpected field');
  }
  // RFC 5280 4.2.1.1: keyIdentifier MUST be present; issuer and serial come together or not at all.
  if (out.keyId === undefined) {
    defects.push({ reason: 'MALFORMED_CERTIFICATE', message: 'authorityKeyIdentifier has no keyIdentifier (RFC 5280 4.2.1.1)' });
  }
  if ((out.issuer === undefined) !== (out.serialHex === undefined)) {
    defects.push({
      reason: 'MALFORMED_CERTIFICATE',
      message: 'authorityKeyIdentifier must carry both or neither of authorityCertIssuer and authorityCertSerialNumber (RFC 5280 4.2.1.1)',
    });
  }
  return out;
}

function decodeAccessDescription(t: Tlv): void {
  const [method, location, ...extra] = childrenOf(seq(t));
  if (!method || !location || extra.length) throw new DerError('bad AccessDescription');
  readOid(method);
  parseGeneralName(location);
}

function decodeNameConstraints(body: Tlv, critical: boolean, defects: Defect[]): NameConstraints {
  let permitted: GeneralName[] = [];
  let excluded: GeneralName[] = [];
  let any = false;
  for (const f of seqOf(body)) {
    if (!f.constructed || !(isContext(f, 0) || isContext(f, 1))) throw new DerError('unexpected field');
    const subtrees = childrenOf(f).map(decodeSubtree);
    // GeneralSubtrees ::= SEQUENCE SIZE (1..MAX) OF GeneralSubtree
    if (subtrees.length === 0) throw new DerError('empty subtrees');
    if (isContext(f, 0)) permitted = subtrees;
    else excluded = subtrees;
    any = true;
  }
  // RFC 5280 4.2.1.10: either permittedSubtrees or excludedSubtrees MUST be present.
  if (!any) throw new DerError('neither permitted nor excluded subtrees');
  for (const base of [...permitted, ...excluded]) {
    const problem = constraintProblem(base);
    if (problem) defects.push({ reason: 'NAME_CONSTRAINTS_VIOLATED', message: `invalid name constraint: ${problem} (RFC 5280 4.2.1.10)` });
  }
  return { permitted, excluded, critical };
}

function decodeSubtree(t: Tlv): GeneralName {
  const [base, ...rest] = childrenOf(seq(t));
  if (!base) throw new DerError('empty GeneralSubtree');
  // RFC 5280 4.2.1.10: minimum MUST be zero and maximum MUST be absent.
  for (const r of rest) {
    if (isContext(r, 0) && readSmallIntImplicit(r) === 0) continue;
    throw new DerError('GeneralSubtree minimum/maximum are not allowed');
  }
  return parseGeneralName(base);
}

function readSmallIntImplicit(t: Tlv): number {
  const v = valueOf(t);
  if (v.length !== 1) return -1;
  return v[0];
}

const DNS_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?$/;

/** A host name as RFC 5280 constraints use it: labels of letters, digits, hyphen (and underscore). */
export function isValidHostName(s: string): boolean {
  if (s.length === 0 || s.length > 253) return false;
  return s.split('.').every((l) => l.length > 0 && l.length <= 63 && DNS_LABEL.test(l));
}

/** Why a constraint's base cannot be a valid constraint of its form, or null when it can. */
function constraintProblem(base: GeneralName): string | null {
  switch (base.type) {
    case 'dns':
      // An empty constraint matches every name; otherwise a plain host name, no wildcard, no
      // leading period (that form exists for URI and email constraints only).
      return base.value === '' || isValidHostName(base.value) ? null : `dNSName "${base.value}"`;
    case 'email': {
      const v = base.value;
      const at = v.split('@');
      if (at.length === 2) return at[0].length > 0 && isValidHostName(at[1]) ? null : `rfc822Name "${v}"`;
      if (at.length > 2) return `rfc822Name "${v}"`;
      const host = v.startsWith('.') ? v.slice(1) : v;
      return isValidHostName(host) ? null : `rfc822Name "${v}"`;
    }
    case 'uri': {
      const host = base.value.startsWith('.') ? base.value.slice(1) : base.value;
      return isValidHostName(host) ? null : `uniformResourceIdentifier "${base.value}"`;
    }
    case 'ip': {
      const n = base.bytes.length;
      if (n !== 8 && n !== 32) return `iPAddress of ${n} octets is not an address and mask`;
      return maskBits(base.bytes.subarray(n / 2)) < 0 ? 'iPAddress mask is not contiguous' : null;
    }
    default:
      return null;
  }
}

/**
 * Cross-extension rules of RFC 5280 4.2.1.3 and 4.2.1.9: keyCertSign only with cA, cA with
 * keyCertSign when keyUsage is present, pathLenConstraint only for CAs, basicConstraints
 * critical in CA certificates, name constraints only in CA certificates (4.2.1.10).
 */
function addConsistencyDefects(v: CertificateExtensions, defects: Defect[]): void {
  const bc = v.basicConstraints;
  const ca = bc?.ca === true;
  if (v.keyUsage?.has('keyCertSign') && !ca) {
    defects.push({ reason: 'KEY_USAGE_INVALID', message: 'keyUsage asserts keyCertSign but basicConstraints cA is not set (RFC 5280 4.2.1.9)' });
  }
  if (ca && v.keyUsage && !v.keyUsage.has('keyCertSign')) {
    defects.push({ reason: 'KEY_USAGE_INVALID', message: 'CA certificate whose keyUsage does not assert keyCertSign (RFC 5280 4.2.1.3)' });
  }
  if (bc && bc.pathLen !== undefined && !ca) {
    defects.push({ reason: 'NOT_A_CA', message: 'pathLenConstraint in a certificate that is not a CA (RFC 5280 4.2.1.9)' });
  }
  if (v.nameConstraints && !ca) {
    defects.push({ reason: 'NAME_CONSTRAINTS_VIOLATED', message: 'nameConstraints in a certificate that is not a CA (RFC 5280 4.2.1.10)' });
  }
}
