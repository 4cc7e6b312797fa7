/**
 * pkijs is the reference for certgate's hand-written DER reader (src/pki/README.md says why the
 * per-request parse is not pkijs itself). Every certificate of x509-limbo and of the builders
 * certgate and its tests use is parsed by both `parseCertificate` and `pkijs.Certificate.fromBER`,
 * reduced to the same plain view, and the two views must be equal; CRLs likewise with `parseCrl`
 * and `pkijs.CertificateRevocationList`. Where the two parsers differ, the case is listed with the
 * rule that decides it and the exact behaviour of each side is asserted.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { LIMBO_PATH, type LimboCase } from '../../scripts/conformance.js';
import { createCa, createDevice, createIntermediate, createServer, issueCertificate } from '../../src/certs/certs-service.js';
import { childrenOf, readTlv } from '../../src/pki/der.js';
import {
  CertificateParseError,
  KEY_USAGE_BITS,
  parseCertificate,
  parseCrl,
  type GeneralName,
  type KeyUsage,
  type Name,
  type ParsedCertificate,
  type ParsedCrl,
} from '../../src/pki/index.js';
import { tempDir, opensslSelfSignedCa, opensslV1Certificate } from '../helpers/openssl.js';
import { makeCert, makeCrl, makeIntermediate, makeLeaf, makeRoot, nameDer, sharedKey, type TestCert } from '../helpers/pki-fixtures.js';

// ---------------------------------------------------------------------------------------------
// The compared view: plain data, so that a disagreement prints as a readable diff.

interface AttributeView {
  oid: string;
  /** Decoded text for the directory string types both parsers decode, else null. */
  text: string | null;
  /** The value's full DER, hex. */
  der: string;
}

/** RDNs in encoding order, each with its attributes in encoding order. */
type NameView = AttributeView[][];

interface GeneralNameView {
  /** The GeneralName CHOICE number (RFC 5280 4.2.1.6): 0 otherName, 1 rfc822Name, 2 dNSName... */
  tag: number;
  /** IA5 text, iPAddress octets in hex, the OID of otherName and registeredID, a directoryName. */
  value: string | NameView | null;
}

interface CertificateView {
  version: number;
  serialHex: string;
  issuer: NameView;
  subject: NameView;
  notBefore: string;
  notAfter: string;
  signatureAlgorithm: string;
  spki: string;
  tbs: string;
  extensions: { oid: string; critical: boolean; value: string }[];
  basicConstraints?: { ca: boolean; pathLen?: number };
  keyUsage?: KeyUsage[];
  extKeyUsage?: string[];
  subjectAltName?: GeneralNameView[];
  subjectKeyId?: string;
  authorityKeyId?: string;
  nameConstraints?: { permitted: GeneralNameView[]; excluded: GeneralNameView[] };
}

interface CrlView {
  issuer: NameView;
  signatureAlgorithm: string;
  thisUpdate: string;
  nextUpdate?: string;
  revoked: { serialHex: string; date: string }[];
  crlNumberHex?: string;
  authorityKeyId?: string;
  tbs: string;
}

const OID = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  nameConstraints: '2.5.29.30',
  cRLNumber: '2.5.29.20',
};


/** Universal tags of the directory string types certgate decodes (RFC 5280 4.1.2.4, A.1). */
const STRING_TAGS = new Set([12, 18, 19, 20, 22, 26, 28, 30]);

const hex = (b: Uint8Array | ArrayBuffer): string => Buffer.from(b instanceof Uint8Array ? b : new Uint8Array(b)).toString('hex');
const stripZeros = (h: string): string => h.replace(/^0+(?=.)/, '');
const toAb = (u: Uint8Array): ArrayBuffer => u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength) as ArrayBuffer;

// ---------------------------------------------------------------------------------------------
// DER building, for test inputs

const cat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => [...p]));

function derLength(n: number): Uint8Array {
  if (n < 0x80) return Uint8Array.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

function tlv(tag: number, content: Uint8Array): Uint8Array {
  return cat(Uint8Array.of(tag), derLength(content.length), content);
}

/**
 * Replaces (or, with null, removes) the element at `at` (child indexes from the outermost
 * element) and re-encodes every enclosing length. The signature no longer verifies, which parsing
 * does not look at.
 */
function edit(der: Uint8Array, at: readonly number[], f: (element: Uint8Array) => Uint8Array | null): Uint8Array {
  const [i, ...rest] = at;
  const kids = childrenOf(readTlv(der, 0)).map((k) => der.subarray(k.start, k.end));
  const replaced = rest.length ? edit(kids[i], rest, f) : f(kids[i]);
  kids.splice(i, 1, ...(replaced ? [replaced] : []));
  return tlv(der[0], cat(...kids));
}

// ---------------------------------------------------------------------------------------------
// certgate's view

function ourName(name: Name): NameView {
  return name.rdns.map((rdn) => rdn.map((a) => ({ oid: a.oid, text: a.value, der: hex(a.valueDer) })));
}

function ourGeneralName(n: GeneralName): GeneralNameView {
  switch (n.type) {
    case 'otherName':
      return { tag: 0, value: n.oid };
    case 'email':
      return { tag: 1, value: n.value };
    case 'dns':
      return { tag: 2, value: n.value };
    case 'x400':
      return { tag: 3, value: null };
    case 'dirName':
      return { tag: 4, value: ourName(n.name) };
    case 'ediParty':
      return { tag: 5, value: null };
    case 'uri':
      return { tag: 6, value: n.value };
    case 'ip':
      return { tag: 7, value: hex(n.bytes) };
    case 'registeredId':
      return { tag: 8, value: n.oid };
  }
}

function ourView(c: ParsedCertificate): CertificateView {
  const view: CertificateView = {
    version: c.version,
    serialHex: c.serialNumberHex,
    issuer: ourName(c.issuerName),
    subject: ourName(c.subjectName),
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    signatureAlgorithm: c.signatureAlgorithm.oid,
    spki: hex(c.spki),
    tbs: hex(c.tbs),
    extensions: c.extensions.map((e) => ({ oid: e.oid, critical: e.critical, value: hex(e.value) })),
  };
  if (c.basicConstraints) {
    const { ca, pathLen } = c.basicConstraints;
    view.basicConstraints = pathLen === undefined ? { ca } : { ca, pathLen };
  }
  if (c.keyUsage) view.keyUsage = KEY_USAGE_BITS.filter((b) => c.keyUsage!.has(b));
  if (c.extKeyUsage) view.extKeyUsage = [...c.extKeyUsage];
  if (c.san.all.length) view.subjectAltName = c.san.all.map(ourGeneralName);
  if (c.subjectKeyId !== undefined) view.subjectKeyId = c.subjectKeyId;
  if (c.authorityKeyId?.keyId !== undefined) view.authorityKeyId = c.authorityKeyId.keyId;
  if (c.nameConstraints) {
    view.nameConstraints = {
      permitted: c.nameConstraints.permitted.map(ourGeneralName),
      excluded: c.nameConstraints.excluded.map(ourGeneralName),
    };
  }
  return view;
}

function ourCrlView(c: ParsedCrl): CrlView {
  return {
    issuer: ourName(c.issuerName),
    signatureAlgorithm: c.signatureAlgorithm.oid,
    thisUpdate: c.thisUpdate.toISOString(),
    ...(c.nextUpdate ? { nextUpdate: c.nextUpdate.toISOString() } : {}),
    revoked: c.revoked.map((r) => ({ serialHex: r.serialHex, date: r.revocationDate.toISOString() })),
    ...(c.crlNumberHex !== undefined ? { crlNumberHex: c.crlNumberHex } : {}),
    ...(c.authorityKeyId !== undefined ? { authorityKeyId: c.authorityKeyId } : {}),
    tbs: hex(c.tbs),
  };
}

// ---------------------------------------------------------------------------------------------
// The reference view, from pkijs (and asn1js, pkijs's own ASN.1 layer, where pkijs flattens)

function refAttribute(atv: pkijs.AttributeTypeAndValue): AttributeView {
  const v = atv.value as asn1js.BaseBlock;
  const isString = v.idBlock.tagClass === 1 && !v.idBlock.isConstructed && STRING_TAGS.has(v.idBlock.tagNumber);
  return {
    oid: atv.type,
    text: isString ? (v as asn1js.BaseStringBlock).valueBlock.value : null,
    der: hex(v.valueBeforeDecodeView),
  };
}

/**
 * pkijs keeps a Name's attributes as one flat list; the RDN boundaries come from asn1js reading
 * the Name encoding pkijs kept.
 */
function refName(name: pkijs.RelativeDistinguishedNames): NameView {
  const sets = (asn1js.fromBER(name.valueBeforeDecode).result as asn1js.Sequence).valueBlock.value;
  const flat = name.typesAndValues.map(refAttribute);
  const out = sets.map((set) => flat.splice(0, (set as asn1js.Set).valueBlock.value.length));
  assert.equal(flat.length, 0);
  return out;
}

function refGeneralName(n: pkijs.GeneralName): GeneralNameView {
  switch (n.type) {
    case 0: {
      const typeId = (n.value as asn1js.Constructed).valueBlock.value[0] as asn1js.ObjectIdentifier;
      return { tag: 0, value: typeId.valueBlock.toString() };
    }
    case 1:
    case 2:
    case 6:
      return { tag: n.type, value: n.value as string };
    case 4:
      return { tag: 4, value: refName(n.value as pkijs.RelativeDistinguishedNames) };
    case 7:
      return { tag: 7, value: hex((n.value as asn1js.OctetString).valueBlock.valueHexView) };
    case 8:
      return { tag: 8, value: n.value as string };
    default:
      return { tag: n.type, value: null };
  }
}

/** The decoded value of an extension when pkijs could decode it as `type`. */
function decoded<T>(ext: pkijs.Extension | undefined, type: abstract new (...args: never[]) => T): T | undefined {
  const v: unknown = ext?.parsedValue;
  if (!(v instanceof type) || (v as { parsingError?: string }).parsingError) return undefined;
  return v;
}

/** A bit of a BIT STRING, counting only the bits its unused-bits octet says are there. */
function bit(b: asn1js.BitString, i: number): boolean {
  const bytes = b.valueBlock.valueHexView;
  return i < bytes.length * 8 - b.valueBlock.unusedBits && ((bytes[i >> 3] >> (7 - (i & 7))) & 1) === 1;
}

function refView(c: pkijs.Certificate): CertificateView {
  const exts = c.extensions ?? [];
  // RFC 5280 4.2 allows one instance of an extension; certgate reads the first, so this does too.
  const first = (oid: string) => exts.find((e) => e.extnID === oid);
  const view: CertificateView = {
    version: c.version + 1,
    serialHex: stripZeros(hex(c.serialNumber.valueBlock.valueHexView)),
    issuer: refName(c.issuer),
    subject: refName(c.subject),
    notBefore: c.notBefore.value.toISOString(),
    notAfter: c.notAfter.value.toISOString(),
    signatureAlgorithm: c.signatureAlgorithm.algorithmId,
    spki: hex(c.subjectPublicKeyInfo.toSchema().toBER()),
    tbs: hex(c.tbsView),
    extensions: exts.map((e) => ({ oid: e.extnID, critical: e.critical, value: hex(e.extnValue.valueBlock.valueHexView) })),
  };
  const bc = decoded(first(OID.basicConstraints), pkijs.BasicConstraints);
  if (bc) {
    const pathLen = bc.pathLenConstraint;
    view.basicConstraints = pathLen === undefined ? { ca: bc.cA } : { ca: bc.cA, pathLen: typeof pathLen === 'number' ? pathLen : NaN };
  }
  // pkijs has no KeyUsage class: the value is the BIT STRING itself.
  const ku = decoded(first(OID.keyUsage), asn1js.BitString);
  if (ku) view.keyUsage = KEY_USAGE_BITS.filter((_, i) => bit(ku, i));
  const eku = decoded(first(OID.extKeyUsage), pkijs.ExtKeyUsage);
  if (eku) view.extKeyUsage = [...eku.keyPurposes];
  const san = decoded(first(OID.subjectAltName), pkijs.AltName);
  if (san?.altNames.length) view.subjectAltName = san.altNames.map(refGeneralName);
  const ski = decoded(first(OID.subjectKeyIdentifier), asn1js.OctetString);
  if (ski) view.subjectKeyId = hex(ski.valueBlock.valueHexView);
  const aki = decoded(first(OID.authorityKeyIdentifier), pkijs.AuthorityKeyIdentifier);
  if (aki?.keyIdentifier) view.authorityKeyId = hex(aki.keyIdentifier.valueBlock.valueHexView);
  const nc = decoded(first(OID.nameConstraints), pkijs.NameConstraints);
  if (nc) {
    view.nameConstraints = {
      permitted: (nc.permittedSubtrees ?? []).map((s) => refGeneralName(s.base)),
      excluded: (nc.excludedSubtrees ?? []).map((s) => refGeneralName(s.base)),
    };
  }
  return view;
}

function refCrlView(c: pkijs.CertificateRevocationList): CrlView {
  const exts = c.crlExtensions?.extensions ?? [];
  const crlNumber = decoded(
    exts.find((e) => e.extnID === OID.cRLNumber),
    asn1js.Integer,
  );
  const aki = decoded(
    exts.find((e) => e.extnID === OID.authorityKeyIdentifier),
    pkijs.AuthorityKeyIdentifier,
  );
  return {
    issuer: refName(c.issuer),
    signatureAlgorithm: c.signatureAlgorithm.algorithmId,
    thisUpdate: c.thisUpdate.value.toISOString(),
    ...(c.nextUpdate ? { nextUpdate: c.nextUpdate.value.toISOString() } : {}),
    revoked: (c.revokedCertificates ?? []).map((r) => ({
      serialHex: stripZeros(hex(r.userCertificate.valueBlock.valueHexView)),
      date: r.revocationDate.value.toISOString(),
    })),
    ...(crlNumber ? { crlNumberHex: stripZeros(hex(crlNumber.valueBlock.valueHexView)) } : {}),
    ...(aki?.keyIdentifier ? { authorityKeyId: hex(aki.keyIdentifier.valueBlock.valueHexView) } : {}),
    tbs: hex(c.tbsView),
  };
}

// ---------------------------------------------------------------------------------------------
// Running both

function ours(der: Uint8Array): ParsedCertificate {
  return parseCertificate(der);
}

function reference(der: Uint8Array): pkijs.Certificate {
  return pkijs.Certificate.fromBER(toAb(der));
}

/** Both views, or the reason one parser refused. */
function both(der: Uint8Array): { ours: CertificateView | Error; ref: CertificateView | Error } {
  const attempt = (f: () => CertificateView) => {
    try {
      return f();
    } catch (e) {
      return e as Error;
    }
  };
  return { ours: attempt(() => ourView(ours(der))), ref: attempt(() => refView(reference(der))) };
}

/** The top-level fields on which two views differ (empty when they agree). */
function differingFields<T extends object>(a: T, b: T): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof T & string>;
  return [...keys].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).sort();
}

function assertSameView(der: Uint8Array, label: string): void {
  const r = both(der);
  if (r.ours instanceof Error) assert.fail(`${label}: certgate refuses it (${r.ours.message}), pkijs ${r.ref instanceof Error ? 'too' : 'parses it'}`);
  if (r.ref instanceof Error) assert.fail(`${label}: pkijs refuses it (${r.ref.message}), certgate parses it`);
  assert.deepEqual(r.ours, r.ref, label);
}

function withoutFields<T extends object>(view: T, fields: readonly (keyof T)[]): Partial<T> {
  const copy: Partial<T> = { ...view };
  for (const f of fields) delete copy[f];
  return copy;
}

function defectMessages(c: ParsedCertificate): string[] {
  return c.defects.map((d) => `${d.reason}: ${d.message}`);
}

// ---------------------------------------------------------------------------------------------
// x509-limbo

function pemToDer(pem: string): Uint8Array {
  return new Uint8Array(Buffer.from(pem.replace(/-----(BEGIN|END) [A-Z0-9 ]+-----/g, '').replace(/\s+/g, ''), 'base64'));
}

interface Sample {
  der: Uint8Array;
  /** Where it was first seen: `<case id> <role>`. */
  label: string;
}

function dedupe(items: [pem: string, label: string][]): Sample[] {
  const seen = new Map<string, Sample>();
  for (const [pem, label] of items) {
    const der = pemToDer(pem);
    const key = createHash('sha256').update(der).digest('hex');
    if (!seen.has(key)) seen.set(key, { der, label });
  }
  return [...seen.values()];
}

function limboCases(): LimboCase[] {
  return (JSON.parse(readFileSync(LIMBO_PATH, 'utf8')) as { testcases: LimboCase[] }).testcases;
}

function limboCertificates(cases: LimboCase[]): Sample[] {
  return dedupe(
    cases.flatMap((c) => [
      ...c.trusted_certs.map((p, i): [string, string] => [p, `${c.id} trusted_certs[${i}]`]),
      ...c.untrusted_intermediates.map((p, i): [string, string] => [p, `${c.id} untrusted_intermediates[${i}]`]),
      [c.peer_certificate, `${c.id} peer_certificate`] as [string, string],
    ]),
  );
}

/**
 * The limbo certificates the two parsers read differently, each with what both sides must do.
 * Everything else in the corpus must give identical views.
 */
const LIMBO_DIFFERENCES: Record<string, (der: Uint8Array) => void> = {
  // asn1js 4 stops at 10,000 ASN.1 nodes (a guard against hostile input); this certificate has
  // 2048 SANs and 2048 subject attributes. certgate's reader has no node budget (it is bounded by
  // MAX_CERTIFICATE_BYTES and never recurses on its own). With the limit raised, pkijs reads exactly
  // what certgate reads.
  'pathological::nc-dos-1 peer_certificate': (der) => {
    assert.throws(() => reference(der), /Data is not correct for 'Certificate'/);
    assert.equal(asn1js.fromBER(der).result.error, 'Maximum ASN.1 node count exceeded');
    const unlimited = asn1js.fromBER(der, { maxNodes: 1_000_000 });
    assert.equal(unlimited.offset, der.length);
    assert.deepEqual(ourView(ours(der)), refView(new pkijs.Certificate({ schema: unlimited.result })));
  },
  // ExtKeyUsageSyntax is SEQUENCE SIZE (1..MAX) (RFC 5280 4.2.1.12). pkijs refuses the empty list
  // (parsingError); certgate reads it as no purpose at all and records the defect that denies the
  // leaf.
  'rfc5280::eku::ee-eku-empty peer_certificate': (der) => {
    const c = ours(der);
    const r = refView(reference(der));
    assert.deepEqual(withoutFields(ourView(c), ['extKeyUsage']), r);
    assert.deepEqual(c.extKeyUsage, []);
    assert.equal(r.extKeyUsage, undefined);
    assert.ok(defectMessages(c).some((m) => m.startsWith('EXTENDED_KEY_USAGE_INVALID: extendedKeyUsage lists no purpose')));
  },
  // RFC 5280 4.2.1.10: GeneralSubtrees is SIZE (1..MAX) and one of the two MUST be present. pkijs
  // reads both forms as "no constraint"; certgate refuses the extension, which a path through the
  // CA then fails on (NAME_CONSTRAINTS_VIOLATED) instead of running unconstrained.
  'webpki::nc::intermediate-permitted-excluded-subtrees-both-null untrusted_intermediates[0]': (der) => emptyNameConstraints(der),
  'webpki::nc::intermediate-permitted-excluded-subtrees-both-empty-sequences untrusted_intermediates[0]': (der) => emptyNameConstraints(der),
  // A dNSName is an IA5String (RFC 5280 4.2.1.6), ASCII only; this one carries the UTF-8 of an
  // emoji. pkijs decodes the octets as Latin-1 text; certgate refuses the extension.
  'webpki::san::unicode-emoji-san peer_certificate': (der) => {
    const c = ours(der);
    const r = refView(reference(der));
    assert.deepEqual(ourView(c), withoutFields(r, ['subjectAltName']));
    assert.deepEqual(r.subjectAltName, [{ tag: 2, value: Buffer.from('😜.example.com').toString('latin1') }]);
    assert.ok(defectMessages(c).some((m) => /malformed subjectAltName extension: IA5String with non-ASCII octet/.test(m)));
  },
};

function emptyNameConstraints(der: Uint8Array): void {
  const c = ours(der);
  const r = refView(reference(der));
  assert.deepEqual(ourView(c), withoutFields(r, ['nameConstraints']));
  assert.deepEqual(r.nameConstraints, { permitted: [], excluded: [] });
  assert.ok(defectMessages(c).some((m) => m.startsWith('NAME_CONSTRAINTS_VIOLATED: malformed nameConstraints extension')));
}

describe('pkijs differential: x509-limbo', { skip: !existsSync(LIMBO_PATH) && `no ${LIMBO_PATH}` }, () => {
  const cases = existsSync(LIMBO_PATH) ? limboCases() : [];

  it('every distinct certificate of the 208 cases reads the same, but for the listed differences', () => {
    assert.equal(cases.length, 208);
    const samples = limboCertificates(cases);
    assert.equal(samples.length, 918);
    const disagreements: string[] = [];
    let compared = 0;
    for (const s of samples) {
      const expected = LIMBO_DIFFERENCES[s.label];
      if (expected) {
        expected(s.der);
        continue;
      }
      const r = both(s.der);
      compared++;
      if (r.ours instanceof Error || r.ref instanceof Error) {
        const say = (x: CertificateView | Error) => (x instanceof Error ? `refuses (${x.message})` : 'parses');
        disagreements.push(`${s.label}: certgate ${say(r.ours)}, pkijs ${say(r.ref)}`);
      } else {
        const fields = differingFields(r.ours, r.ref);
        if (fields.length) disagreements.push(`${s.label}: ${fields.join(', ')} differ`);
      }
    }
    assert.deepEqual(disagreements, []);
    assert.equal(compared, samples.length - Object.keys(LIMBO_DIFFERENCES).length, 'a listed difference names no limbo certificate');
  });

  it('every CRL of the corpus reads the same', () => {
    const crls = dedupe(cases.flatMap((c) => c.crls.map((p, i): [string, string] => [p, `${c.id} crls[${i}]`])));
    assert.ok(crls.length >= 5);
    for (const s of crls) {
      assert.deepEqual(ourCrlView(parseCrl(s.der)), refCrlView(pkijs.CertificateRevocationList.fromBER(toAb(s.der))), s.label);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Certificates made by certgate (src/certs), its test fixtures and the openssl CLI

/** A SubjectAltName with every GeneralName form certgate reads (RFC 5280 4.2.1.6). */
function everyGeneralName(): Uint8Array {
  const ctx = (n: number, content: Uint8Array, constructed = false) => tlv((constructed ? 0xa0 : 0x80) | n, content);
  const oid = (dotted: string) => new Uint8Array(new asn1js.ObjectIdentifier({ value: dotted }).toBER());
  const upn = cat(oid('1.3.6.1.4.1.311.20.2.3'), ctx(0, tlv(0x0c, Buffer.from('dev1@acme.example')), true));
  return tlv(
    0x30,
    cat(
      ctx(0, upn, true),
      ctx(1, Buffer.from('dev1@acme.example')),
      ctx(2, Buffer.from('dev1.acme.example')),
      ctx(4, nameDer('CN=dev1,O=Acme,C=DE'), true),
      ctx(6, Buffer.from('spiffe://acme.example/device/dev1')),
      ctx(7, Uint8Array.of(192, 0, 2, 7)),
      ctx(7, Uint8Array.of(0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7)),
      ctx(8, oid('1.3.6.1.4.1.55738.1.2').subarray(2)),
    ),
  );
}

function fixtureCertificates(): [string, TestCert][] {
  const root = makeRoot();
  const rsaRoot = makeRoot({ key: sharedKey('rsa', 'differential-root'), subject: 'CN=Acme RSA Root,O=Acme\\, Inc.,C=DE' });
  const ica = makeIntermediate(root, { pathLen: 0 });
  const out: [string, TestCert][] = [
    ['EC root', root],
    ['RSA root', rsaRoot],
    ['intermediate with pathLen 0', ica],
    ['intermediate with pathLen 3, basicConstraints not critical', makeIntermediate(rsaRoot, { basicConstraints: { ca: true, pathLen: 3, critical: false } })],
    [
      'CA with name constraints of every form',
      makeIntermediate(root, {
        nameConstraints: {
          permitted: { dns: ['acme.example'], email: ['acme.example', '.acme.example', 'ops@acme.example'], uri: ['.acme.example'], ip: ['192.0.2.0/24', '2001:db8::/32'], dirNames: ['O=Acme,C=DE'] },
          excluded: { dns: ['bad.acme.example'], ip: ['192.0.2.128/25'] },
        },
      }),
    ],
    ['CA with only excluded subtrees', makeIntermediate(root, { nameConstraints: { excluded: { dns: ['evil.example'], uri: ['evil.example'] } } })],
    [
      'EC leaf with SAN URI, DNS, IP and email',
      makeLeaf(ica, {
        subject: 'CN=dev1,OU=Devices,O=Acme,C=DE',
        san: { uri: ['spiffe://acme.example/device/dev1'], dns: ['dev1.acme.example', '*.dev1.acme.example'], ip: ['192.0.2.7', '2001:db8::7', '::1'], email: ['dev1@acme.example'], dirNames: ['CN=dev1,O=Acme'] },
      }),
    ],
    ['leaf with every GeneralName form', makeLeaf(ica, { extensions: [{ oid: OID.subjectAltName, critical: false, value: everyGeneralName() }] })],
    ['RSA leaf signed with RSASSA-PSS', makeLeaf(rsaRoot, { key: sharedKey('rsa', 'differential-leaf'), rsaPss: true, signatureHash: 'SHA-384' })],
    ['RSA leaf signed with SHA-1', makeLeaf(rsaRoot, { key: sharedKey('rsa', 'differential-leaf'), signatureHash: 'SHA-1' })],
    ['P-384 leaf', makeLeaf(ica, { key: 'ec-p384' })],
    ['P-521 leaf', makeLeaf(ica, { key: 'ec-p521' })],
    ['Ed25519 leaf', makeLeaf(ica, { key: 'ed25519' })],
    ['leaf with several EKUs, critical', makeLeaf(ica, { extKeyUsage: ['serverAuth', 'clientAuth', 'anyExtendedKeyUsage', '1.3.6.1.4.1.55738.7'], extKeyUsageCritical: true })],
    ['leaf with every keyUsage bit', makeLeaf(ica, { keyUsage: [...KEY_USAGE_BITS] })],
    ['leaf with keyUsage not critical', makeLeaf(ica, { keyUsage: ['digitalSignature', 'keyAgreement'], keyUsageCritical: false })],
    ['leaf with a critical unknown extension', makeLeaf(ica, { unknownCriticalExtension: true })],
    ['leaf with a negative serial', makeLeaf(ica, { serial: Uint8Array.of(0x80, 0x01) })],
    ['leaf with serial zero', makeLeaf(ica, { serial: 0 })],
    ['leaf with a 21-octet serial', makeLeaf(ica, { serial: Uint8Array.of(0x00, ...Array<number>(20).fill(0xee)) })],
    ['leaf with an empty subject', makeLeaf(ica, { subject: '', san: { uri: ['urn:dev:1'] }, sanCritical: true })],
    ['leaf without SKI and AKI', makeLeaf(ica, { subjectKeyId: false, authorityKeyId: false })],
    ['leaf valid from 1949 to 2051 (GeneralizedTime)', makeLeaf(ica, { notBefore: new Date('1949-12-31T23:59:59Z'), notAfter: new Date('2051-01-01T00:00:00Z') })],
    ['leaf valid from 1950 to 2049 (UTCTime bounds)', makeLeaf(ica, { notBefore: new Date('1950-01-01T00:00:00Z'), notAfter: new Date('2049-12-31T23:59:59Z') })],
    ['duplicate extension', makeLeaf(ica, { extensions: [{ oid: OID.subjectKeyIdentifier, critical: false, value: Uint8Array.of(4, 1, 1) }] })],
    ['X.509 v1 self-signed certificate', makeCert({ version: 1, subject: 'CN=legacy,O=Acme' })],
    ['X.509 v1 leaf under a v3 CA', makeLeaf(rsaRoot, { version: 1, key: sharedKey('rsa', 'differential-leaf') })],
  ];
  return out;
}

async function certgateCertificates(): Promise<[string, Uint8Array][]> {
  const ca = await createCa({ cn: 'Acme Root CA', org: 'Acme', country: 'DE' });
  const rsaCa = await createCa({ key: 'rsa', cn: 'Acme RSA Root', pathLen: 1, state: 'Bayern', locality: 'München' });
  const intermediate = await createIntermediate({ issuer: rsaCa, cn: 'Acme Devices CA', pathLen: 0, curve: 'P-384' });
  const device = await createDevice({
    issuer: intermediate,
    deviceId: 'dev 1/ä',
    uriDomain: 'acme.example',
    extraSan: [
      { type: 'dns', value: 'dev1.acme.example' },
      { type: 'ip', value: '10.0.0.1' },
      { type: 'ip', value: 'fe80::1' },
      { type: 'email', value: 'dev1@acme.example' },
    ],
  });
  const rsaDevice = await createDevice({ issuer: rsaCa, cn: 'rsa-device', key: 'rsa', eku: ['clientAuth', 'serverAuth'] });
  const server = await createServer({ issuer: ca, dns: ['mqtt.acme.example'], ip: ['127.0.0.1', '::1'] });
  const v1 = await issueCertificate({ subject: { cn: 'legacy device' }, issuer: ca, version: 1 });
  const critical = await createDevice({
    issuer: ca,
    cn: 'critical-ext',
    eku: null,
    extraExtensions: [{ oid: '1.3.6.1.4.1.55738.666.2', critical: true, value: Uint8Array.of(0x05, 0x00) }],
  });
  return [
    ['createCa (P-256)', ca.certDer],
    ['createCa (RSA, pathLen 1)', rsaCa.certDer],
    ['createIntermediate (P-384, pathLen 0)', intermediate.certDer],
    ['createDevice with SPIFFE URI, DNS, IP and email SANs', device.certDer],
    ['createDevice (RSA, two EKUs)', rsaDevice.certDer],
    ['createServer', server.certDer],
    ['issueCertificate version 1', v1.certDer],
    ['createDevice with a critical unknown extension', critical.certDer],
  ];
}

describe('pkijs differential: certificates certgate and its tests make', () => {
  for (const [name, cert] of fixtureCertificates()) {
    it(`pki-fixtures: ${name}`, () => assertSameView(cert.der, name));
  }

  it('src/certs: CA, intermediate, device, server, v1 and critical-extension certificates', async () => {
    for (const [name, der] of await certgateCertificates()) assertSameView(der, name);
  });

  it('openssl CLI: v1 certificate and a CA with name constraints, SAN and EKU', async (t) => {
    const v1 = await opensslV1Certificate(t, 'openssl v1 device');
    const nc = await opensslSelfSignedCa(t, {
      cn: 'openssl constrained CA',
      addext: [
        'basicConstraints=critical,CA:true,pathlen:2',
        'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
        'extendedKeyUsage=clientAuth,serverAuth',
        'subjectAltName=DNS:ca.acme.example,IP:192.0.2.1,email:ca@acme.example,URI:https://acme.example/ca',
        'nameConstraints=critical,permitted;DNS:acme.example,permitted;IP:10.0.0.0/255.0.0.0,excluded;email:.evil.example',
      ],
    });
    for (const [name, pem] of [
      ['openssl v1', v1],
      ['openssl constrained CA', nc],
    ]) {
      assertSameView(pemToDer(pem), name);
    }
    const parsed = ours(pemToDer(nc));
    assert.equal(parsed.nameConstraints?.permitted.length, 2);
    assert.deepEqual(parsed.basicConstraints, { ca: true, pathLen: 2, critical: true });
  });
});

// ---------------------------------------------------------------------------------------------
// Encodings chosen to sit on the edges: DER that is unusual but valid, and BER or RFC 5280
// violations where the parsers part ways.

/** Child indexes within a v3 certificate (version present). */
const AT = {
  version: [0, 0],
  serial: [0, 1],
  notAfter: [0, 4, 1],
  subject: [0, 5],
  firstExtension: [0, 7, 0, 0],
};

const attribute = (oid: string, value: Uint8Array) =>
  tlv(0x30, cat(new Uint8Array(new asn1js.ObjectIdentifier({ value: oid }).toBER()), value));

/** A Name with a multi-valued RDN and the rarer string types, and one value that is no string. */
function unusualName(): Uint8Array {
  const utf16 = (s: string) => Uint8Array.from([...s].flatMap((ch) => [ch.charCodeAt(0) >> 8, ch.charCodeAt(0) & 0xff]));
  const utf32 = (s: string) => Uint8Array.from([...s].flatMap((ch) => [0, 0, ch.charCodeAt(0) >> 8, ch.charCodeAt(0) & 0xff]));
  // DER sorts the members of a SET OF by their encodings (X.690 11.6).
  const multi = [attribute('2.5.4.6', tlv(0x13, Buffer.from('DE'))), attribute('2.5.4.10', tlv(0x0c, Buffer.from('Acme')))].sort(Buffer.compare);
  return tlv(
    0x30,
    cat(
      tlv(0x31, cat(...multi)),
      tlv(0x31, attribute('2.5.4.11', tlv(0x1e, utf16('Geräte')))),
      tlv(0x31, attribute('2.5.4.7', tlv(0x1c, utf32('Zürich')))),
      tlv(0x31, attribute('2.5.4.8', tlv(0x14, Buffer.from('Bayern')))),
      tlv(0x31, attribute('2.5.4.45', tlv(0x03, Uint8Array.of(0x00, 0xab)))),
      tlv(0x31, attribute('0.9.2342.19200300.100.1.25', tlv(0x16, Buffer.from('example')))),
      tlv(0x31, attribute('2.5.4.3', tlv(0x0c, Buffer.from('gerät 😀')))),
    ),
  );
}

describe('pkijs differential: edge encodings', () => {
  const root = makeRoot();
  const leaf = makeLeaf(root, { subject: 'CN=edge,O=Acme', san: { dns: ['edge.acme.example'] } });
  const original = refView(reference(leaf.der));
  const content = leaf.der.subarray(readTlv(leaf.der, 0).valueStart);

  it('unusual valid DER reads the same: multi-valued RDN, BMPString, UniversalString, TeletexString, a non-string value', () => {
    const der = edit(leaf.der, AT.subject, () => unusualName());
    assertSameView(der, 'unusual subject');
    const subject = ourView(ours(der)).subject;
    assert.equal(subject[0].length, 2);
    assert.deepEqual(subject.map((rdn) => rdn.map((a) => a.text)), [['DE', 'Acme'], ['Geräte'], ['Zürich'], ['Bayern'], [null], ['example'], ['gerät 😀']]);
  });

  // BER allows what DER forbids; certgate reads DER only (X.690 10), pkijs reads BER. For each of
  // these pkijs still reads the certificate the original encoding gives.
  const berOnly: [string, Uint8Array, RegExp][] = [
    // X.690 10.1: definite lengths only.
    ['indefinite length', cat(Uint8Array.of(0x30, 0x80), content, Uint8Array.of(0, 0)), /indefinite length is not DER/],
    // X.690 10.1: the fewest length octets. Outside the signed TBS, a longer form would give the
    // same certificate another SHA-256 fingerprint (credentialsId).
    ['length in more octets than needed', cat(Uint8Array.of(0x30, 0x83, 0x00), derLength(content.length).subarray(1), content), /length is not minimally encoded/],
    ['long-form length below 128', edit(leaf.der, AT.firstExtension, (e) => cat(Uint8Array.of(0x30, 0x81), e.subarray(1))), /length is not minimally encoded/],
    // X.690 8.3.2: an INTEGER in the fewest octets.
    ['serial with a superfluous leading zero', edit(leaf.der, AT.serial, (e) => tlv(0x02, cat(Uint8Array.of(0), e.subarray(2)))), /INTEGER is not minimally encoded/],
  ];
  for (const [name, der, refusal] of berOnly) {
    it(`BER only, refused by certgate, read by pkijs: ${name}`, () => {
      assert.throws(() => ours(der), (e: Error) => e instanceof CertificateParseError && refusal.test(e.message));
      const r = refView(reference(der));
      assert.deepEqual(withoutFields(r, ['tbs']), withoutFields(original, ['tbs']));
    });
  }

  it('trailing data after the certificate: refused by certgate, ignored by pkijs', () => {
    const der = cat(leaf.der, Uint8Array.of(0));
    assert.throws(() => ours(der), /trailing data after element/);
    assert.deepEqual(refView(reference(der)), original);
  });

  // RFC 5280 4.1.2.5.1: UTCTime is YYMMDDHHMMSSZ. asn1js reads a time without seconds or with an
  // offset as a date that is not the one encoded (no error), so refusing is the only safe reading.
  for (const [name, time] of [
    ['UTCTime without seconds', '9912312359Z'],
    ['UTCTime with a UTC offset', '991231235959+0100'],
  ]) {
    it(`${name}: refused by certgate, misread by pkijs`, () => {
      const der = edit(leaf.der, AT.notAfter, () => tlv(0x17, Buffer.from(time)));
      assert.throws(() => ours(der), /bad UTCTime/);
      const r = refView(reference(der));
      assert.notEqual(r.notAfter.slice(0, 10), '2099-12-31');
    });
  }

  // RFC 5280 4.1.2.5.2: GeneralizedTime MUST NOT have fractional seconds. certgate reads the time
  // at the encoding's one-second granularity; pkijs keeps the fraction.
  it('GeneralizedTime with fractional seconds: both read it, certgate drops the fraction', () => {
    const der = edit(leaf.der, AT.notAfter, () => tlv(0x18, Buffer.from('20991231235959.5Z')));
    const o = ourView(ours(der));
    const r = refView(reference(der));
    assert.deepEqual(withoutFields(o, ['notAfter']), withoutFields(r, ['notAfter']));
    assert.equal(o.notAfter, '2099-12-31T23:59:59.000Z');
    assert.equal(r.notAfter, '2099-12-31T23:59:59.500Z');
  });

  // RFC 5280 4.1.2.9: extensions only in version 3; 4.1.2.1: versions are 1, 2 and 3.
  it('extensions in a version 1 certificate: refused by certgate, read by pkijs', () => {
    const der = edit(leaf.der, AT.version, () => null);
    assert.throws(() => ours(der), /extensions require version 3/);
    const r = refView(reference(der));
    assert.equal(r.version, 1);
    assert.deepEqual(r.extensions, original.extensions);
  });

  it('version 4: refused by certgate, read by pkijs', () => {
    const der = edit(leaf.der, [...AT.version, 0], () => Uint8Array.of(0x02, 0x01, 0x03));
    assert.throws(() => ours(der), /unknown certificate version/);
    assert.equal(refView(reference(der)).version, 4);
  });

  // X.690 11.2.1: the unused bits of a BIT STRING are zero. Here keyUsage says "1 bit used:
  // digitalSignature" and hides keyCertSign in the padding. pkijs (and OpenSSL) read only the used
  // bit; certgate refuses the extension, so the certificate can neither sign nor issue.
  it('keyUsage with bits set in its unused padding: pkijs reads the used bits, certgate refuses the extension', () => {
    const der = makeLeaf(root, { keyUsage: false, extensions: [{ oid: OID.keyUsage, critical: true, value: Uint8Array.of(0x03, 0x02, 0x07, 0x84) }] }).der;
    const c = ours(der);
    const r = refView(reference(der));
    assert.deepEqual(ourView(c), withoutFields(r, ['keyUsage']));
    assert.deepEqual(r.keyUsage, ['digitalSignature']);
    assert.equal(c.keyUsage, undefined);
    assert.ok(defectMessages(c).some((m) => m.startsWith('KEY_USAGE_INVALID: malformed keyUsage extension: BIT STRING has non-zero unused bits')));
  });

  // Constructed OCTET STRINGs are BER; pkijs's Extension schema wants a primitive one too.
  it('extnValue as a constructed OCTET STRING: refused by both', () => {
    const der = edit(leaf.der, [...AT.firstExtension, 1], (e) => tlv(0x24, e));
    assert.throws(() => ours(der), /expected an OCTET STRING/);
    assert.throws(() => reference(der), /Data is not correct for 'Certificate'/);
  });
});

// ---------------------------------------------------------------------------------------------
// CRLs

const run = promisify(execFile);

/** The smallest `openssl ca` setup that revokes certificates and issues CRLs. */
async function opensslCa(t: TestContext, ca: TestCert): Promise<{ revoke: (cert: TestCert, ...args: string[]) => Promise<void>; gencrl: (...args: string[]) => Promise<Uint8Array> }> {
  const dir = await tempDir(t, 'certgate-crl-');
  await fs.writeFile(path.join(dir, 'ca.pem'), ca.pem);
  await fs.writeFile(path.join(dir, 'ca.key'), ca.key.privateKeyPem);
  await fs.writeFile(path.join(dir, 'index.txt'), '');
  await fs.writeFile(path.join(dir, 'crlnumber'), '1000\n');
  await fs.writeFile(
    path.join(dir, 'ca.cnf'),
    `[ ca ]
default_ca = minimal
[ minimal ]
database = ${dir}/index.txt
crlnumber = ${dir}/crlnumber
certificate = ${dir}/ca.pem
private_key = ${dir}/ca.key
default_md = sha256
default_crl_days = 30
crl_extensions = crl_ext
[ crl_ext ]
authorityKeyIdentifier = keyid:always
`,
  );
  const openssl = (...args: string[]) => run('openssl', ['ca', '-config', 'ca.cnf', ...args], { cwd: dir });
  let n = 0;
  return {
    revoke: async (cert, ...args) => {
      const file = `revoked-${n++}.pem`;
      await fs.writeFile(path.join(dir, file), cert.pem);
      await openssl('-revoke', file, ...args);
    },
    gencrl: async (...args) => {
      await openssl('-gencrl', '-out', 'crl.pem', ...args);
      return pemToDer(await fs.readFile(path.join(dir, 'crl.pem'), 'utf8'));
    },
  };
}

function assertSameCrl(der: Uint8Array, label: string): ParsedCrl {
  const c = parseCrl(der);
  assert.deepEqual(ourCrlView(c), refCrlView(pkijs.CertificateRevocationList.fromBER(toAb(der))), label);
  return c;
}

describe('pkijs differential: CRLs', () => {
  const root = makeRoot();
  const rsaRoot = makeRoot({ key: sharedKey('rsa', 'differential-root'), subject: 'CN=Acme RSA Root,O=Acme,C=DE' });

  it('openssl ca -gencrl: empty, then with revoked certificates and entry extensions', async (t) => {
    for (const ca of [root, rsaRoot]) {
      const openssl = await opensslCa(t, ca);
      const empty = assertSameCrl(await openssl.gencrl(), 'empty openssl CRL');
      assert.deepEqual(empty.revoked, []);
      assert.equal(empty.crlNumberHex, '1000');
      const leaves = [makeLeaf(ca), makeLeaf(ca, { serial: Uint8Array.of(0x00, 0xff, 0x01) }), makeLeaf(ca, { serial: 7 })];
      await openssl.revoke(leaves[0]);
      await openssl.revoke(leaves[1], '-crl_reason', 'keyCompromise');
      await openssl.revoke(leaves[2], '-crl_compromise', '20240102030405Z');
      const crl = assertSameCrl(await openssl.gencrl('-crlhours', '12'), 'openssl CRL with revocations');
      assert.deepEqual(
        crl.revoked.map((r) => r.serialHex).sort(),
        leaves.map((l) => l.parsed.serialNumberHex).sort(),
      );
      assert.equal(crl.authorityKeyId, ca.parsed.subjectKeyId);
      assert.equal(crl.nextUpdate!.getTime() - crl.thisUpdate.getTime(), 12 * 3600_000);
    }
  });

  it('pki-fixtures makeCrl: UTCTime and GeneralizedTime dates, serials with and without a leading zero', () => {
    const crls = [
      makeCrl({ issuer: root }),
      makeCrl({
        issuer: root,
        revoked: [
          { serialHex: '00ab', date: new Date('2020-02-29T12:00:00Z') },
          { serialHex: '0102', date: new Date('2051-06-01T00:00:00Z') },
          { serialHex: '7f', date: new Date('1950-01-01T00:00:00Z') },
        ],
        crlNumber: 4096,
        thisUpdate: new Date('1949-12-31T23:59:59Z'),
        nextUpdate: new Date('2060-01-01T00:00:00Z'),
      }),
      makeCrl({ issuer: rsaRoot, revoked: [{ serialHex: '01' }], signatureHash: 'SHA-512', crlNumber: false }),
    ];
    for (const [i, crl] of crls.entries()) assertSameCrl(crl.der, `makeCrl #${i}`);
    assert.deepEqual(parseCrl(crls[1].der).revoked.map((r) => r.serialHex), ['ab', '102', '7f']);
  });

  it('a CRL built and signed with pkijs CertificateRevocationList', async () => {
    const key = sharedKey('ec', 'differential-crl');
    const issuer = makeRoot({ key });
    const crl = new pkijs.CertificateRevocationList();
    crl.version = 1;
    crl.issuer = pkijs.RelativeDistinguishedNames.fromBER(toAb(issuer.subjectNameDer));
    crl.thisUpdate = new pkijs.Time({ type: 0, value: new Date('2030-05-06T07:08:09Z') });
    crl.nextUpdate = new pkijs.Time({ type: 1, value: new Date('2050-05-06T07:08:09Z') });
    crl.revokedCertificates = [
      new pkijs.RevokedCertificate({
        userCertificate: new asn1js.Integer({ valueHex: toAb(Uint8Array.of(0x00, 0x9c, 0x01)) }),
        revocationDate: new pkijs.Time({ type: 0, value: new Date('2030-01-01T00:00:00Z') }),
      }),
    ];
    crl.crlExtensions = new pkijs.Extensions({
      extensions: [new pkijs.Extension({ extnID: OID.cRLNumber, critical: false, extnValue: new asn1js.Integer({ value: 42 }).toBER() })],
    });
    const signingKey = await crypto.subtle.importKey('pkcs8', key.privateKey.export({ type: 'pkcs8', format: 'der' }), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
    await crl.sign(signingKey, 'SHA-256');
    const der = new Uint8Array(crl.toSchema(true).toBER());
    const parsed = assertSameCrl(der, 'pkijs CRL');
    assert.deepEqual(parsed.revoked, [{ serialHex: '9c01', revocationDate: new Date('2030-01-01T00:00:00Z') }]);
    assert.equal(parsed.crlNumberHex, '2a');
  });
});
