/**
 * Test PKI: builds CA, intermediate and device certificates (and CRLs) with chosen properties,
 * in process, with pkijs for the structures and Node's crypto for keys and signatures.
 *
 *   const root = makeRoot();
 *   const ica = makeIntermediate(root, { pathLen: 0 });
 *   const leaf = makeLeaf(ica, { subject: 'CN=dev1', san: { uri: ['spiffe://acme/device/dev1'] } });
 *   parseCertificate(leaf.pem)
 *
 * Every knob has an RFC 5280-conforming default (v3, positive random serial, SKI on every
 * certificate, AKI on issued ones, critical basicConstraints on CAs), so a test only states the
 * property it is about: `keyType: 'rsa-1024'`, `notAfter`, `pathLen`, `keyUsage`, `extKeyUsage`,
 * `san`, `nameConstraints`, `version: 1`, `unknownCriticalExtension`, `signatureHash: 'SHA-1'`,
 * `tamperSignature`...
 */
import { createHash, generateKeyPairSync, randomBytes, sign, constants, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { KEY_USAGE_BITS, parseCertificate, type KeyUsage, type ParsedCertificate } from '../../src/pki/index.js';

// ---------------------------------------------------------------------------------------------
// Keys

export type KeyType = 'ec' | 'ec-p384' | 'ec-p521' | 'ec-p192' | 'rsa' | 'rsa-1024' | 'rsa-3072' | 'ed25519' | 'dsa';

export interface TestKey {
  readonly type: KeyType;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** SubjectPublicKeyInfo DER. */
  readonly spki: Uint8Array;
  /** PKCS#8 PEM of the private key (for the openssl CLI or a TLS client). */
  readonly privateKeyPem: string;
  /**
   * Signs in place of `privateKey`, for keys that have none (`craftedKey`): the signature for
   * `data` with `hash` (`sha256`...).
   */
  readonly sign?: (data: Uint8Array, hash: string) => Uint8Array;
}

/** A fresh key pair. RSA keys take tens of milliseconds: prefer `sharedKey` for them. */
export function newKey(type: KeyType = 'ec'): TestKey {
  const pair = (() => {
    switch (type) {
      case 'ec':
        return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      case 'ec-p384':
        return generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
      case 'ec-p521':
        return generateKeyPairSync('ec', { namedCurve: 'secp521r1' });
      case 'ec-p192':
        return generateKeyPairSync('ec', { namedCurve: 'prime192v1' });
      case 'rsa':
        return generateKeyPairSync('rsa', { modulusLength: 2048 });
      case 'rsa-1024':
        return generateKeyPairSync('rsa', { modulusLength: 1024 });
      case 'rsa-3072':
        return generateKeyPairSync('rsa', { modulusLength: 3072 });
      case 'ed25519':
        return generateKeyPairSync('ed25519');
      case 'dsa':
        return generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 });
    }
  })();
  return {
    type,
    privateKey: pair.privateKey,
    publicKey: pair.publicKey,
    spki: new Uint8Array(pair.publicKey.export({ type: 'spki', format: 'der' })),
    privateKeyPem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

const shared = new Map<string, TestKey>();

/** A key reused across tests under the same label (tests that do not care which key). */
export function sharedKey(type: KeyType = 'ec', label = 'default'): TestKey {
  const k = `${type}/${label}`;
  let key = shared.get(k);
  if (!key) shared.set(k, (key = newKey(type)));
  return key;
}

// ---------------------------------------------------------------------------------------------
// Crafted keys: public keys no key generator makes, to test that certgate refuses them

/**
 * A TestKey around a SubjectPublicKeyInfo built by hand. `privateKey`/`publicKey` are those of an
 * unrelated key (nothing may rely on them); certificates it issues are signed by `sign` when given,
 * else carry a signature of zeros.
 */
export function craftedKey(type: 'rsa' | 'ec', spki: Uint8Array, signer?: (data: Uint8Array, hash: string) => Uint8Array): TestKey {
  const placeholder = sharedKey(type === 'rsa' ? 'rsa' : 'ec', 'crafted-placeholder');
  return { ...placeholder, spki, sign: signer ?? ((_d, _h) => new Uint8Array(type === 'rsa' ? 256 : 72)) };
}

/** SubjectPublicKeyInfo DER of the RSA key (n, e) (RFC 8017 A.1.1, RFC 3279 2.3.1). */
export function rsaSpki(n: bigint, e: bigint): Uint8Array {
  const int = (v: bigint) => {
    let hex = v.toString(16);
    if (hex.length % 2) hex = '0' + hex;
    if (parseInt(hex[0]!, 16) >= 8) hex = '00' + hex;
    return derTlv(0x02, new Uint8Array(Buffer.from(hex, 'hex')));
  };
  const rsaPublicKey = derSeq(int(n), int(e));
  const algorithm = new Uint8Array(Buffer.from('300d06092a864886f70d0101010500', 'hex'));
  return derSeq(algorithm, derBitString(rsaPublicKey));
}

/** The modulus of an RSA TestKey. */
export function rsaModulus(key: TestKey): bigint {
  const jwk = key.publicKey.export({ format: 'jwk' });
  return BigInt('0x' + Buffer.from(jwk.n!, 'base64url').toString('hex'));
}

/**
 * An RSA key with public exponent 1 and a real 2048-bit modulus: with e = 1 the signature of a
 * message is its EMSA-PKCS1-v1_5 encoding itself (RFC 8017 9.2), which anyone can compute, so
 * `sign` forges signatures that `crypto.verify` accepts without any private key.
 */
export function exponentOneKey(): TestKey {
  const n = rsaModulus(sharedKey('rsa', 'exponent-one-modulus'));
  const k = 256;
  return craftedKey('rsa', rsaSpki(n, 1n), (data, hash) => {
    if (hash !== 'sha256') throw new Error('exponentOneKey signs with SHA-256 only');
    const digestInfo = Buffer.concat([Buffer.from('3031300d060960864801650304020105000420', 'hex'), createHash('sha256').update(data).digest()]);
    const em = Buffer.alloc(k, 0xff);
    em[0] = 0x00;
    em[1] = 0x01;
    em[k - digestInfo.length - 1] = 0x00;
    digestInfo.copy(em, k - digestInfo.length);
    return new Uint8Array(em);
  });
}

/** A P-256 SubjectPublicKeyInfo whose point is not on the curve (the last bit of y flipped). */
export function offCurveP256Spki(): Uint8Array {
  const spki = new Uint8Array(sharedKey('ec', 'off-curve').spki);
  spki[spki.length - 1] ^= 0x01;
  return spki;
}

// ---------------------------------------------------------------------------------------------
// Certificates

export interface NameSet {
  dns?: string[];
  uri?: string[];
  email?: string[];
  /** Addresses (`192.0.2.1`, `::1`) in SANs; CIDR blocks (`192.0.2.0/24`) in name constraints. */
  ip?: string[];
  /** Directory names as `CN=x,O=y`. */
  dirNames?: string[];
}

export type SignatureHash = 'SHA-1' | 'SHA-256' | 'SHA-384' | 'SHA-512';

export interface CertSpec {
  /** RFC 4514 style, most specific first: `CN=dev1,O=Acme`. Empty string for an empty name. */
  subject?: string;
  /** The issuing certificate; omitted for a self-signed certificate. */
  issuer?: TestCert;
  /** The subject key (or its type, for a fresh one). Default: fresh P-256. */
  key?: TestKey | KeyType;
  /** Serial content: a non-negative number/bigint, or raw two's-complement octets. Default: 16 random positive octets. */
  serial?: number | bigint | Uint8Array;
  /** 1 makes a certificate without extensions, as `openssl x509 -req` does. */
  version?: 1 | 3;
  notBefore?: Date;
  notAfter?: Date;
  /** basicConstraints; false omits it. Default: `{ca: true, critical: true}` for makeRoot/makeIntermediate, absent for leaves. */
  basicConstraints?: { ca: boolean; pathLen?: number; critical?: boolean } | false;
  /** keyUsage bits; false omits the extension. */
  keyUsage?: KeyUsage[] | false;
  keyUsageCritical?: boolean;
  /** extendedKeyUsage as names (`clientAuth`, `serverAuth`, `anyExtendedKeyUsage`...) or OIDs; false omits it. */
  extKeyUsage?: string[] | false;
  extKeyUsageCritical?: boolean;
  san?: NameSet;
  sanCritical?: boolean;
  nameConstraints?: { permitted?: NameSet; excluded?: NameSet; critical?: boolean };
  /** Include subjectKeyIdentifier (default true for v3). */
  subjectKeyId?: boolean;
  /** Include authorityKeyIdentifier (default true for v3 issued certificates, false for self-signed). */
  authorityKeyId?: boolean;
  /** Adds the critical private extension 1.3.6.1.4.1.55738.666.1 no validator knows. */
  unknownCriticalExtension?: boolean;
  /** Raw extra extensions. */
  extensions?: { oid: string; critical: boolean; value: Uint8Array }[];
  signatureHash?: SignatureHash;
  /** Sign RSA with RSASSA-PSS instead of PKCS#1 v1.5. */
  rsaPss?: boolean;
  /** Flip a bit of the signature after signing. */
  tamperSignature?: boolean;
}

export interface TestCert {
  readonly der: Uint8Array;
  readonly pem: string;
  readonly key: TestKey;
  readonly subject: string;
  /** Subject Name DER (to issue certificates and CRLs under it). */
  readonly subjectNameDer: Uint8Array;
  readonly subjectKeyId: Uint8Array | null;
  readonly serialHex: string;
  /** The certificate through certgate's parser (parsed once, on first use). */
  readonly parsed: ParsedCertificate;
}

const HOUR = 3600_000;
const DAY = 24 * HOUR;

const EKU_OIDS: Readonly<Record<string, string>> = {
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  codeSigning: '1.3.6.1.5.5.7.3.3',
  emailProtection: '1.3.6.1.5.5.7.3.4',
  timeStamping: '1.3.6.1.5.5.7.3.8',
  OCSPSigning: '1.3.6.1.5.5.7.3.9',
  anyExtendedKeyUsage: '2.5.29.37.0',
};

const KU_ORDER = KEY_USAGE_BITS;
export const UNKNOWN_EXTENSION_OID = '1.3.6.1.4.1.55738.666.1';

/** Builds and signs one certificate. */
export function makeCert(spec: CertSpec = {}): TestCert {
  const key = typeof spec.key === 'object' ? spec.key : newKey(spec.key ?? 'ec');
  const subjectName = spec.subject ?? 'CN=test';
  const selfSigned = !spec.issuer;
  const signerKey = spec.issuer ? spec.issuer.key : key;
  const version = spec.version ?? 3;
  const notBefore = spec.notBefore ?? new Date(Date.now() - HOUR);
  const notAfter = spec.notAfter ?? new Date(Date.now() + 365 * DAY);

  const serial = serialBytes(spec.serial);
  const cert = new pkijs.Certificate();
  cert.version = version === 1 ? 0 : 2;
  cert.serialNumber = new asn1js.Integer({ valueHex: toAb(serial) });
  const sigAlg = signatureAlgorithm(signerKey, spec.signatureHash ?? defaultHash(signerKey), spec.rsaPss === true);
  cert.signature = sigAlg.id;
  cert.signatureAlgorithm = sigAlg.id;
  cert.issuer = spec.issuer ? rdnsFromDer(spec.issuer.subjectNameDer) : rdns(subjectName);
  cert.subject = rdns(subjectName);
  cert.notBefore = time(notBefore);
  cert.notAfter = time(notAfter);
  cert.subjectPublicKeyInfo = pkijs.PublicKeyInfo.fromBER(toAb(key.spki));

  const ski = keyIdentifier(key.spki);
  if (version === 3) {
    const exts = buildExtensions(spec, ski, selfSigned);
    if (exts.length) cert.extensions = exts;
  }

  const tbs = new Uint8Array(cert.encodeTBS().toBER());
  let signature = sigAlg.sign(tbs);
  if (spec.tamperSignature) {
    signature = new Uint8Array(signature);
    signature[signature.length - 1] ^= 0x01;
  }
  const der = derSeq(tbs, new Uint8Array(sigAlg.id.toSchema().toBER()), derBitString(signature));
  const pem = toPem(der, 'CERTIFICATE');
  let parsed: ParsedCertificate | undefined;
  return {
    der,
    pem,
    key,
    subject: subjectName,
    subjectNameDer: new Uint8Array(cert.subject.toSchema().toBER()),
    subjectKeyId: version === 3 && spec.subjectKeyId !== false ? ski : null,
    serialHex: Buffer.from(serial).toString('hex'),
    get parsed() {
      return (parsed ??= parseCertificate(der));
    },
  };
}

/** A self-signed root CA: CA:true (critical), keyCertSign + cRLSign, SKI, valid ten years. */
export function makeRoot(spec: Omit<CertSpec, 'issuer'> = {}): TestCert {
  return makeCert({
    subject: 'CN=certgate Test Root CA,O=certgate tests',
    basicConstraints: { ca: true, critical: true },
    keyUsage: ['keyCertSign', 'cRLSign'],
    notAfter: new Date(Date.now() + 3650 * DAY),
    ...spec,
  });
}

/** An intermediate CA under `issuer`; `pathLen` sets basicConstraints pathLenConstraint. */
export function makeIntermediate(issuer: TestCert, spec: Omit<CertSpec, 'issuer'> & { pathLen?: number } = {}): TestCert {
  const { pathLen, ...rest } = spec;
  return makeCert({
    subject: 'CN=certgate Test Intermediate CA,O=certgate tests',
    basicConstraints: pathLen === undefined ? { ca: true, critical: true } : { ca: true, pathLen, critical: true },
    keyUsage: ['keyCertSign', 'cRLSign'],
    notAfter: new Date(Date.now() + 1825 * DAY),
    ...rest,
    issuer,
  });
}

/** A device certificate under `issuer`: digitalSignature, clientAuth, CN=device-1. */
export function makeLeaf(issuer: TestCert, spec: Omit<CertSpec, 'issuer'> = {}): TestCert {
  return makeCert({
    subject: 'CN=device-1',
    keyUsage: ['digitalSignature'],
    extKeyUsage: ['clientAuth'],
    ...spec,
    issuer,
  });
}

// ---------------------------------------------------------------------------------------------
// CRLs

export interface CrlSpec {
  issuer: TestCert;
  revoked?: { serialHex: string; date?: Date }[];
  thisUpdate?: Date;
  nextUpdate?: Date;
  /** CRL number; false omits the (mandatory) extension. */
  crlNumber?: number | false;
  crlNumberCritical?: boolean;
  signatureHash?: SignatureHash;
  /** Sign with this key instead of the issuer's (a forged CRL). */
  signingKey?: TestKey;
}

export interface TestCrl {
  readonly der: Uint8Array;
  readonly pem: string;
}

/** Builds and signs a v2 CRL under `issuer`. */
export function makeCrl(spec: CrlSpec): TestCrl {
  const signer = spec.signingKey ?? spec.issuer.key;
  const alg = signatureAlgorithm(signer, spec.signatureHash ?? defaultHash(signer), false);
  const entries = (spec.revoked ?? []).map(
    (r) =>
      new asn1js.Sequence({
        value: [new asn1js.Integer({ valueHex: toAb(Buffer.from(r.serialHex.padStart(2, '0'), 'hex')) }), time(r.date ?? new Date(Date.now() - HOUR)).toSchema()],
      }),
  );
  const exts: pkijs.Extension[] = [];
  if (spec.crlNumber !== false) {
    exts.push(extension('2.5.29.20', spec.crlNumberCritical === true, new asn1js.Integer({ value: spec.crlNumber ?? 1 })));
  }
  if (spec.issuer.subjectKeyId) {
    exts.push(extension('2.5.29.35', false, new pkijs.AuthorityKeyIdentifier({ keyIdentifier: new asn1js.OctetString({ valueHex: toAb(spec.issuer.subjectKeyId) }) }).toSchema()));
  }
  const fields: asn1js.AsnType[] = [
    new asn1js.Integer({ value: 1 }),
    alg.id.toSchema(),
    asn1js.fromBER(toAb(spec.issuer.subjectNameDer)).result,
    time(spec.thisUpdate ?? new Date(Date.now() - HOUR)).toSchema(),
    time(spec.nextUpdate ?? new Date(Date.now() + 7 * DAY)).toSchema(),
  ];
  if (entries.length) fields.push(new asn1js.Sequence({ value: entries }));
  if (exts.length) {
    fields.push(new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [new asn1js.Sequence({ value: exts.map((e) => e.toSchema()) })] }));
  }
  const tbs = new Uint8Array(new asn1js.Sequence({ value: fields }).toBER());
  const der = derSeq(tbs, new Uint8Array(alg.id.toSchema().toBER()), derBitString(alg.sign(tbs)));
  return { der, pem: toPem(der, 'X509 CRL') };
}

/**
 * A signed v2 CRL of `count` entries under `issuer` (an EC or RSA test CA), built straight as DER:
 * pkijs takes seconds for 100,000 entries, this a fraction of one. Serials are `serialOf(i)`
 * (hex, default: 16 octets ending in i); every entry is dated `revocationDate`.
 */
export function makeLargeCrl(
  issuer: TestCert,
  count: number,
  opts: { serialOf?: (i: number) => string; revocationDate?: Date; thisUpdate?: Date; nextUpdate?: Date; crlNumber?: number } = {},
): TestCrl {
  const serialOf = opts.serialOf ?? ((i: number) => '7e' + i.toString(16).padStart(30, '0'));
  const date = utcTime(opts.revocationDate ?? new Date(Date.now() - HOUR));
  const entries: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    let hex = serialOf(i);
    if (hex.length % 2) hex = '0' + hex;
    const serial = Buffer.from(hex, 'hex');
    const integer = Buffer.concat([Buffer.from([0x02]), Buffer.from(derLength(serial.length)), serial]);
    const body = Buffer.concat([integer, date]);
    entries.push(Buffer.concat([Buffer.from([0x30]), Buffer.from(derLength(body.length)), body]));
  }
  const list = Buffer.concat(entries);
  const alg = signatureAlgorithm(issuer.key, defaultHash(issuer.key), false);
  const crlNumber = new Uint8Array(extension('2.5.29.20', false, new asn1js.Integer({ value: opts.crlNumber ?? 1 })).toSchema().toBER());
  const extensions = tlv(0xa0, tlv(0x30, crlNumber));
  const tbs = tlv(
    0x30,
    Buffer.concat([
      Buffer.from('020101', 'hex'),
      Buffer.from(alg.id.toSchema().toBER()),
      Buffer.from(issuer.subjectNameDer),
      utcTime(opts.thisUpdate ?? new Date(Date.now() - HOUR)),
      utcTime(opts.nextUpdate ?? new Date(Date.now() + 7 * DAY)),
      ...(count ? [tlv(0x30, list)] : []),
      extensions,
    ]),
  );
  const signature = alg.sign(tbs);
  const der = new Uint8Array(tlv(0x30, Buffer.concat([tbs, Buffer.from(alg.id.toSchema().toBER()), tlv(0x03, Buffer.concat([Buffer.from([0]), signature]))])));
  return { der, pem: toPem(der, 'X509 CRL') };
}

function tlv(tag: number, content: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag]), Buffer.from(derLength(content.length)), content]);
}

function utcTime(d: Date): Buffer {
  return Buffer.from(new Uint8Array(time(d).toSchema().toBER()));
}

// ---------------------------------------------------------------------------------------------
// Building blocks

function defaultHash(key: TestKey): SignatureHash {
  return key.type === 'ec-p384' ? 'SHA-384' : key.type === 'ec-p521' ? 'SHA-512' : 'SHA-256';
}

const NODE_HASH: Record<SignatureHash, string> = { 'SHA-1': 'sha1', 'SHA-256': 'sha256', 'SHA-384': 'sha384', 'SHA-512': 'sha512' };
const HASH_OID: Record<SignatureHash, string> = {
  'SHA-1': '1.3.14.3.2.26',
  'SHA-256': '2.16.840.1.101.3.4.2.1',
  'SHA-384': '2.16.840.1.101.3.4.2.2',
  'SHA-512': '2.16.840.1.101.3.4.2.3',
};
const ECDSA_OID: Record<SignatureHash, string> = {
  'SHA-1': '1.2.840.10045.4.1',
  'SHA-256': '1.2.840.10045.4.3.2',
  'SHA-384': '1.2.840.10045.4.3.3',
  'SHA-512': '1.2.840.10045.4.3.4',
};
const RSA_OID: Record<SignatureHash, string> = {
  'SHA-1': '1.2.840.113549.1.1.5',
  'SHA-256': '1.2.840.113549.1.1.11',
  'SHA-384': '1.2.840.113549.1.1.12',
  'SHA-512': '1.2.840.113549.1.1.13',
};
const DSA_OID: Partial<Record<SignatureHash, string>> = { 'SHA-1': '1.2.840.10040.4.3', 'SHA-256': '2.16.840.1.101.3.4.3.2' };

function signatureAlgorithm(key: TestKey, hash: SignatureHash, pss: boolean): { id: pkijs.AlgorithmIdentifier; sign: (data: Uint8Array) => Uint8Array } {
  const t = key.type;
  if (t === 'ed25519') {
    return { id: new pkijs.AlgorithmIdentifier({ algorithmId: '1.3.101.112' }), sign: (d) => new Uint8Array(sign(null, d, key.privateKey)) };
  }
  if (t.startsWith('ec')) {
    return {
      id: new pkijs.AlgorithmIdentifier({ algorithmId: ECDSA_OID[hash] }),
      sign: (d) => (key.sign ? key.sign(d, NODE_HASH[hash]) : new Uint8Array(sign(NODE_HASH[hash], d, key.privateKey))),
    };
  }
  if (t === 'dsa') {
    return { id: new pkijs.AlgorithmIdentifier({ algorithmId: DSA_OID[hash] ?? DSA_OID['SHA-256']! }), sign: (d) => new Uint8Array(sign(NODE_HASH[hash], d, key.privateKey)) };
  }
  if (pss) {
    const hashAlg = new pkijs.AlgorithmIdentifier({ algorithmId: HASH_OID[hash], algorithmParams: new asn1js.Null() });
    const saltLength = { 'SHA-1': 20, 'SHA-256': 32, 'SHA-384': 48, 'SHA-512': 64 }[hash];
    const params = new pkijs.RSASSAPSSParams({
      hashAlgorithm: hashAlg,
      maskGenAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: '1.2.840.113549.1.1.8', algorithmParams: hashAlg.toSchema() }),
      saltLength,
    });
    return {
      id: new pkijs.AlgorithmIdentifier({ algorithmId: '1.2.840.113549.1.1.10', algorithmParams: params.toSchema() }),
      sign: (d) => new Uint8Array(sign(NODE_HASH[hash], d, { key: key.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength })),
    };
  }
  return {
    id: new pkijs.AlgorithmIdentifier({ algorithmId: RSA_OID[hash], algorithmParams: new asn1js.Null() }),
    sign: (d) => (key.sign ? key.sign(d, NODE_HASH[hash]) : new Uint8Array(sign(NODE_HASH[hash], d, key.privateKey))),
  };
}

function buildExtensions(spec: CertSpec, ski: Uint8Array, selfSigned: boolean): pkijs.Extension[] {
  const out: pkijs.Extension[] = [];
  const bc = spec.basicConstraints;
  if (bc) {
    out.push(
      extension(
        '2.5.29.19',
        bc.critical !== false,
        new pkijs.BasicConstraints(bc.pathLen === undefined ? { cA: bc.ca } : { cA: bc.ca, pathLenConstraint: bc.pathLen }).toSchema(),
      ),
    );
  }
  if (spec.keyUsage) out.push(extension('2.5.29.15', spec.keyUsageCritical !== false, keyUsageBits(spec.keyUsage)));
  if (spec.extKeyUsage) {
    const oids = spec.extKeyUsage.map((u) => EKU_OIDS[u] ?? u);
    out.push(extension('2.5.29.37', spec.extKeyUsageCritical === true, new asn1js.Sequence({ value: oids.map((o) => new asn1js.ObjectIdentifier({ value: o })) })));
  }
  if (spec.san) out.push(extension('2.5.29.17', spec.sanCritical === true, new pkijs.GeneralNames({ names: generalNames(spec.san, false) }).toSchema()));
  if (spec.nameConstraints) {
    const nc = spec.nameConstraints;
    const subtrees = (set: NameSet | undefined) => (set ? generalNames(set, true).map((base) => new pkijs.GeneralSubtree({ base })) : undefined);
    const permitted = subtrees(nc.permitted);
    const excluded = subtrees(nc.excluded);
    out.push(
      extension(
        '2.5.29.30',
        nc.critical !== false,
        new pkijs.NameConstraints({ ...(permitted ? { permittedSubtrees: permitted } : {}), ...(excluded ? { excludedSubtrees: excluded } : {}) }).toSchema(),
      ),
    );
  }
  if (spec.subjectKeyId !== false) out.push(extension('2.5.29.14', false, new asn1js.OctetString({ valueHex: toAb(ski) })));
  const issuerSki = spec.issuer?.subjectKeyId;
  if ((spec.authorityKeyId ?? !selfSigned) && (issuerSki || selfSigned)) {
    const keyId = selfSigned ? ski : issuerSki!;
    out.push(extension('2.5.29.35', false, new pkijs.AuthorityKeyIdentifier({ keyIdentifier: new asn1js.OctetString({ valueHex: toAb(keyId) }) }).toSchema()));
  }
  if (spec.unknownCriticalExtension) out.push(extension(UNKNOWN_EXTENSION_OID, true, new asn1js.Null()));
  for (const e of spec.extensions ?? []) out.push(new pkijs.Extension({ extnID: e.oid, critical: e.critical, extnValue: toAb(e.value) }));
  return out;
}

function extension(oid: string, critical: boolean, value: asn1js.AsnType): pkijs.Extension {
  return new pkijs.Extension({ extnID: oid, critical, extnValue: value.toBER() });
}

function keyUsageBits(usages: readonly KeyUsage[]): asn1js.BitString {
  let bits = 0;
  let highest = -1;
  for (const u of usages) {
    const i = KU_ORDER.indexOf(u);
    bits |= 1 << (15 - i);
    highest = Math.max(highest, i);
  }
  if (highest < 0) return new asn1js.BitString({ valueHex: new ArrayBuffer(0) });
  const bytes = highest >= 8 ? [bits >> 8, bits & 0xff] : [bits >> 8];
  // DER: trailing zero bits are not encoded (X.690 11.2.2).
  const last = bytes[bytes.length - 1];
  let unused = 0;
  while (unused < 7 && ((last >> unused) & 1) === 0) unused++;
  return new asn1js.BitString({ valueHex: toAb(Uint8Array.from(bytes)), unusedBits: unused });
}

function generalNames(set: NameSet, constraint: boolean): pkijs.GeneralName[] {
  const out: pkijs.GeneralName[] = [];
  for (const v of set.email ?? []) out.push(new pkijs.GeneralName({ type: 1, value: v }));
  for (const v of set.dns ?? []) out.push(new pkijs.GeneralName({ type: 2, value: v }));
  for (const v of set.dirNames ?? []) out.push(new pkijs.GeneralName({ type: 4, value: rdns(v) }));
  for (const v of set.uri ?? []) out.push(new pkijs.GeneralName({ type: 6, value: v }));
  for (const v of set.ip ?? []) out.push(new pkijs.GeneralName({ type: 7, value: new asn1js.OctetString({ valueHex: toAb(ipBytes(v, constraint)) }) }));
  return out;
}

/** `192.0.2.1` -> 4 octets; `::1` -> 16; with `/n` (constraints) the address followed by its mask. */
export function ipBytes(text: string, withMask: boolean): Uint8Array {
  const [addr, prefix] = text.split('/');
  const bytes = addr.includes(':') ? ipv6(addr) : Uint8Array.from(addr.split('.').map(Number));
  if (!withMask && prefix === undefined) return bytes;
  const bits = prefix === undefined ? bytes.length * 8 : Number(prefix);
  const mask = new Uint8Array(bytes.length);
  for (let i = 0; i < bits; i++) mask[i >> 3] |= 0x80 >> (i & 7);
  return Uint8Array.from([...bytes, ...mask]);
}

function ipv6(addr: string): Uint8Array {
  const [head, tail] = addr.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail ? tail.split(':') : [];
  const words = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t].map((w) => parseInt(w, 16));
  return Uint8Array.from(words.flatMap((w) => [w >> 8, w & 0xff]));
}

const ATTRIBUTE_OIDS: Readonly<Record<string, string>> = {
  CN: '2.5.4.3',
  C: '2.5.4.6',
  L: '2.5.4.7',
  ST: '2.5.4.8',
  O: '2.5.4.10',
  OU: '2.5.4.11',
  serialNumber: '2.5.4.5',
  DC: '0.9.2342.19200300.100.1.25',
  UID: '0.9.2342.19200300.100.1.1',
  emailAddress: '1.2.840.113549.1.9.1',
};

/** `CN=a,O=b` (most specific first) -> Name with O first, one attribute per RDN, as RFC 4514 orders the string. */
export function rdns(text: string): pkijs.RelativeDistinguishedNames {
  return pkijs.RelativeDistinguishedNames.fromBER(toAb(nameDer(text)));
}

/** DER of a Name from its RFC 4514-style text. */
export function nameDer(text: string): Uint8Array {
  const parts = text === '' ? [] : text.split(/(?<!\\),/).map((p) => p.trim());
  const sets = parts.reverse().map((p) => {
    const eq = p.indexOf('=');
    const type = p.slice(0, eq);
    const value = p.slice(eq + 1).replace(/\\,/g, ',');
    const oid = ATTRIBUTE_OIDS[type] ?? type;
    const v =
      oid === '2.5.4.6'
        ? new asn1js.PrintableString({ value })
        : oid === ATTRIBUTE_OIDS.emailAddress || oid === ATTRIBUTE_OIDS.DC
          ? new asn1js.IA5String({ value })
          : new asn1js.Utf8String({ value });
    return new asn1js.Set({ value: [new asn1js.Sequence({ value: [new asn1js.ObjectIdentifier({ value: oid }), v] })] });
  });
  return new Uint8Array(new asn1js.Sequence({ value: sets }).toBER());
}

function rdnsFromDer(der: Uint8Array): pkijs.RelativeDistinguishedNames {
  return pkijs.RelativeDistinguishedNames.fromBER(toAb(der));
}

function time(d: Date): pkijs.Time {
  const y = d.getUTCFullYear();
  return new pkijs.Time({ type: y >= 1950 && y < 2050 ? 0 : 1, value: new Date(Math.floor(d.getTime() / 1000) * 1000) });
}

function serialBytes(serial: CertSpec['serial']): Uint8Array {
  if (serial instanceof Uint8Array) return serial;
  if (serial === undefined) {
    const b = new Uint8Array(randomBytes(16));
    b[0] = (b[0] & 0x7f) || 0x01;
    return b;
  }
  let hex = BigInt(serial).toString(16);
  if (hex.length % 2) hex = '0' + hex;
  if (parseInt(hex[0], 16) >= 8) hex = '00' + hex;
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING contents. */
function keyIdentifier(spki: Uint8Array): Uint8Array {
  const info = pkijs.PublicKeyInfo.fromBER(toAb(spki));
  return new Uint8Array(createHash('sha1').update(info.subjectPublicKey.valueBlock.valueHexView).digest());
}

function toAb(u: Uint8Array): ArrayBuffer {
  return u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength) as ArrayBuffer;
}

function derLength(n: number): Uint8Array {
  if (n < 0x80) return Uint8Array.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Uint8Array.from([0x80 | bytes.length, ...bytes]);
}

function derTlv(tag: number, content: Uint8Array): Uint8Array {
  return Uint8Array.from([tag, ...derLength(content.length), ...content]);
}

function derSeq(...parts: Uint8Array[]): Uint8Array {
  return derTlv(0x30, Uint8Array.from(parts.flatMap((p) => [...p])));
}

function derBitString(bytes: Uint8Array): Uint8Array {
  return derTlv(0x03, Uint8Array.from([0, ...bytes]));
}

export function toPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64').match(/.{1,64}/g)!.join('\n');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}
