/**
 * Making certificates: self-signed roots, intermediates, TLS server and device (client)
 * certificates, in the shapes amqtt's ca_creds/server_creds/device_creds and the Cumulocity
 * openssl recipes produce. Pure library: no files, no process state; the `certgate certs`
 * command and the tests both build on it.
 *
 * Everything is built with pkijs and signed through WebCrypto; keys are held as Node KeyObjects.
 */
import { createHash, sign as nodeSign, webcrypto, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { CertsError } from './certs-errors.js';
import {
  defaultHashFor,
  generateKeyPair,
  keysMatch,
  privateKeyToPem,
  publicKeyOf,
  readPrivateKey,
  spkiDer,
  toSigningKey,
  type HashAlgorithm,
  type KeyPair,
  type KeySpec,
} from './keys.js';
import { certificatesFromPem, certificatesToPem, toPem } from './pem.js';
import {
  authorityKeyIdentifierExtension,
  basicConstraintsExtension,
  encodeName,
  extKeyUsageExtension,
  keyIdentifier,
  keyUsageExtension,
  nameFromDer,
  randomSerial,
  rawExtension,
  readCertificate,
  serialFromHex,
  serialToHex,
  subjectAltNameExtension,
  subjectKeyIdentifierExtension,
  toArrayBuffer,
  x509Time,
  type CertificateFacts,
  type KeyUsageName,
  type RawExtension,
  type SanEntry,
  type SubjectSpec,
} from './x509.js';

export { CertsError, type CertsErrorCode } from './certs-errors.js';
export {
  describeKey,
  generateKeyPair,
  privateKeyToPem,
  readPrivateKey,
  type EcCurve,
  type HashAlgorithm,
  type KeyAlgorithm,
  type KeyPair,
  type KeySpec,
} from './keys.js';
export { certificatesFromPem, certificatesToPem, toPem } from './pem.js';
export { toPkcs12, type Pkcs12Options } from './pkcs12.js';
export {
  readCertificate,
  type CertificateFacts,
  type KeyUsageName,
  type RawExtension,
  type SanEntry,
  type SubjectSpec,
} from './x509.js';

/** Whatever can sign: a certificate, the chain above it, and its private key. */
export interface Issuer {
  readonly certDer: Uint8Array;
  /** The issuer's own certificate first, then each certificate above it, up to the root if known. */
  readonly chainDer: readonly Uint8Array[];
  readonly privateKey: KeyObject;
}

/** A certificate made by this module, with its key. Usable as an `Issuer` when it is a CA. */
export interface Credentials extends Issuer {
  readonly certPem: string;
  /** PKCS#8 PEM, unencrypted. */
  readonly keyPem: string;
  /** Leaf to root (the root included), as the seed guides build `deviceCertChain.pem`. */
  readonly chainPem: string;
  readonly publicKey: KeyObject;
  readonly subject: string;
  readonly issuer: string;
  /** Uppercase hex, as `openssl x509 -serial` prints it. */
  readonly serialNumberHex: string;
  /** Lowercase hex SHA-1 of the DER: a trusted certificate's `fingerprint`. */
  readonly fingerprintSha1: string;
  /** Lowercase hex SHA-256 of the DER: a device credential's `credentialsId`. */
  readonly fingerprintSha256: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface ValidityOptions {
  /** Validity in days counted from now (or from `notBefore` when that is given). */
  days?: number;
  /** Default: 5 minutes ago, so a clock slightly behind ours still accepts the certificate. */
  notBefore?: Date;
  /** Overrides `days`. Dates in the past make expired certificates, which tests need. */
  notAfter?: Date;
}

/** Everything a certificate can be made of; the `create*` presets fill these in. */
export interface CertificateOptions extends KeySpec, ValidityOptions {
  subject: SubjectSpec;
  /** Absent: self-signed. */
  issuer?: Issuer;
  /** Certify an existing key (e.g. to rotate a certificate and keep the key) instead of generating one. */
  keyPair?: KeyPair;
  /** Hex or raw octets; default 16 random octets. */
  serialNumber?: string | Uint8Array;
  /** 3 (default) or 1. Version 1 certificates have no extensions, like `openssl x509 -req` without `-extfile`. */
  version?: 1 | 3;
  /** null omits the extension. */
  basicConstraints?: { ca: boolean; pathLen?: number; critical?: boolean } | null;
  keyUsage?: readonly KeyUsageName[] | null;
  /** Default true (RFC 5280 4.2.1.3: SHOULD be critical). */
  keyUsageCritical?: boolean;
  /** Names (`serverAuth`, `clientAuth`, ...) or OIDs; null or absent omits the extension. */
  extKeyUsage?: readonly string[] | null;
  san?: readonly SanEntry[];
  /** Default true. */
  subjectKeyIdentifier?: boolean;
  /** Default true. */
  authorityKeyIdentifier?: boolean;
  extraExtensions?: readonly RawExtension[];
  /** Default: SHA-256, or SHA-384/SHA-512 for an issuer key on P-384/P-521. SHA-1 is for tests of weak signatures. */
  signatureHash?: HashAlgorithm;
}

const DAY_MS = 86_400_000;
const DEFAULT_BACKDATE_MS = 5 * 60_000;

/** Issues one certificate. The general form behind `createCa`, `createIntermediate`, `createServer`, `createDevice`. */
export async function issueCertificate(opts: CertificateOptions): Promise<Credentials> {
  const keyPair = opts.keyPair ?? (await generateKeyPair(opts));
  const issuer = opts.issuer;
  const issuerFacts = issuer ? factsOf(issuer.certDer) : undefined;
  const signingKey = issuer ? issuer.privateKey : keyPair.privateKey;

  const { notBefore, notAfter } = validity(opts);
  const subjectDer = encodeName(opts.subject);
  const subjectSpki = spkiDer(keyPair.publicKey);
  const serial =
    opts.serialNumber === undefined
      ? randomSerial()
      : typeof opts.serialNumber === 'string'
        ? serialFromHex(opts.serialNumber)
        : opts.serialNumber;

  const cert = new pkijs.Certificate();
  cert.version = opts.version === 1 ? 0 : 2;
  cert.serialNumber = new asn1js.Integer({ valueHex: toArrayBuffer(serial) });
  cert.subject = nameFromDer(subjectDer);
  cert.issuer = nameFromDer(issuerFacts ? issuerFacts.subjectDer : subjectDer);
  cert.notBefore = x509Time(notBefore);
  cert.notAfter = x509Time(notAfter);
  cert.subjectPublicKeyInfo = new pkijs.PublicKeyInfo({ schema: asn1js.fromBER(toArrayBuffer(subjectSpki)).result });

  if (opts.version !== 1) {
    const extensions: pkijs.Extension[] = [];
    if (opts.basicConstraints) {
      const bc = opts.basicConstraints;
      extensions.push(basicConstraintsExtension(bc.ca, bc.pathLen, bc.critical ?? true));
    }
    if (opts.keyUsage && opts.keyUsage.length) {
      extensions.push(keyUsageExtension(opts.keyUsage, opts.keyUsageCritical ?? true));
    }
    if (opts.extKeyUsage && opts.extKeyUsage.length) extensions.push(extKeyUsageExtension(opts.extKeyUsage));
    if (opts.san && opts.san.length) extensions.push(subjectAltNameExtension(opts.san));
    const ownKeyId = keyIdentifier(subjectSpki);
    if (opts.subjectKeyIdentifier !== false) extensions.push(subjectKeyIdentifierExtension(ownKeyId));
    if (opts.authorityKeyIdentifier !== false) {
      const authorityKeyId = issuerFacts ? (issuerFacts.subjectKeyIdentifier ?? keyIdentifier(issuerFacts.spki)) : ownKeyId;
      extensions.push(authorityKeyIdentifierExtension(authorityKeyId));
    }
    for (const e of opts.extraExtensions ?? []) extensions.push(rawExtension(e));
    if (extensions.length) cert.extensions = extensions;
  }

  const hash = opts.signatureHash ?? defaultHashFor(signingKey);
  const der = await signCertificate(cert, signingKey, hash);

  const chainDer = [der, ...(issuer ? issuer.chainDer : [])];
  const subject = readCertificate(der).subject;
  return {
    certDer: der,
    chainDer,
    privateKey: keyPair.privateKey,
    publicKey: keyPair.publicKey,
    certPem: toPem('CERTIFICATE', der),
    keyPem: privateKeyToPem(keyPair.privateKey),
    chainPem: certificatesToPem(chainDer),
    subject,
    issuer: issuerFacts ? issuerFacts.subject : subject,
    serialNumberHex: serialToHex(serial),
    fingerprintSha1: createHash('sha1').update(der).digest('hex'),
    fingerprintSha256: createHash('sha256').update(der).digest('hex'),
    notBefore: cert.notBefore.value,
    notAfter: cert.notAfter.value,
  };
}

// ---------------------------------------------------------------------------------------------
// Presets

/** Subject fields, flattened into the preset options; `cn` has a default per preset. */
export type SubjectFields = Partial<SubjectSpec>;

type Overrides = Omit<CertificateOptions, 'subject' | 'issuer'>;

export interface CaOptions extends SubjectFields, Overrides {
  /** basicConstraints pathLenConstraint; absent means unlimited. */
  pathLen?: number;
}

export interface IntermediateOptions extends CaOptions {
  issuer: Issuer;
}

export interface ServerOptions extends SubjectFields, Overrides {
  issuer: Issuer;
  /** DNS SANs. With neither `dns` nor `ip`, the CN becomes the one SAN (as a DNS name or IP). */
  dns?: readonly string[];
  ip?: readonly string[];
  /** Default `['serverAuth']`; null omits the extension. */
  eku?: readonly string[] | null;
}

export interface DeviceOptions extends SubjectFields, Overrides {
  issuer: Issuer;
  /** amqtt's device id: the CN when `cn` is not given, and `X` in `spiffe://<uriDomain>/device/X`. */
  deviceId?: string;
  uriDomain?: string;
  extraSan?: readonly SanEntry[];
  /** Default `['clientAuth']`; null omits the extension. */
  eku?: readonly string[] | null;
}

/**
 * Self-signed root: v3, basicConstraints critical CA:true (with an optional pathLen),
 * keyUsage critical keyCertSign + cRLSign, SKI, AKI = SKI.
 */
export function createCa(opts: CaOptions = {}): Promise<Credentials> {
  const { pathLen, ...rest } = defined(opts);
  return issueCertificate({
    days: 3650,
    basicConstraints: { ca: true, pathLen, critical: true },
    keyUsage: ['keyCertSign', 'cRLSign'],
    ...rest,
    subject: subjectOf(opts, 'certgate Root CA'),
  });
}

/** A CA certificate signed by `issuer`; same extensions as `createCa`. */
export function createIntermediate(opts: IntermediateOptions): Promise<Credentials> {
  const { pathLen, issuer, ...rest } = defined(opts);
  return issueCertificate({
    days: 1825,
    basicConstraints: { ca: true, pathLen, critical: true },
    keyUsage: ['keyCertSign', 'cRLSign'],
    ...rest,
    issuer,
    subject: subjectOf(opts, 'certgate Intermediate CA'),
  });
}

/** TLS server certificate: CA:false, digitalSignature (+ keyEncipherment for RSA), serverAuth, SANs. */
export function createServer(opts: ServerOptions): Promise<Credentials> {
  const { issuer, dns, ip, eku, ...rest } = defined(opts);
  const cn = opts.cn ?? dns?.[0] ?? ip?.[0] ?? 'localhost';
  let san: SanEntry[] = [
    ...(dns ?? []).map((value): SanEntry => ({ type: 'dns', value })),
    ...(ip ?? []).map((value): SanEntry => ({ type: 'ip', value })),
  ];
  if (!san.length) san = [/^[\d.]+$|:/.test(cn) ? { type: 'ip', value: cn } : { type: 'dns', value: cn }];
  return issueLeaf(opts, rest, { issuer, cn, san, extKeyUsage: eku === undefined ? ['serverAuth'] : eku });
}

/**
 * Device (MQTT client) certificate: CA:false, digitalSignature (+ keyEncipherment for RSA),
 * clientAuth; with `deviceId` and `uriDomain` the SAN URI `spiffe://<uriDomain>/device/<deviceId>`
 * that amqtt's CertificateAuthPlugin reads.
 */
export function createDevice(opts: DeviceOptions): Promise<Credentials> {
  const { issuer, deviceId, uriDomain, extraSan, eku, ...rest } = defined(opts);
  const cn = opts.cn ?? deviceId;
  if (!cn) throw new CertsError('INVALID_OPTION', 'a device certificate needs a CN or a device id');
  if (uriDomain !== undefined && !deviceId) {
    throw new CertsError('INVALID_OPTION', 'a URI domain needs a device id (spiffe://<domain>/device/<device id>)');
  }
  const san: SanEntry[] = [];
  if (deviceId && uriDomain) san.push({ type: 'uri', value: spiffeUri(uriDomain, deviceId) });
  san.push(...(extraSan ?? []));
  return issueLeaf(opts, rest, { issuer, cn, san, extKeyUsage: eku === undefined ? ['clientAuth'] : eku });
}

/** amqtt's device identity URI. The device id is percent-encoded where a URI path needs it. */
export function spiffeUri(uriDomain: string, deviceId: string): string {
  if (!/^[A-Za-z0-9.-]+$/.test(uriDomain)) {
    throw new CertsError('INVALID_OPTION', `URI domain "${uriDomain}" is not a host name`);
  }
  return `spiffe://${uriDomain}/device/${encodeURIComponent(deviceId)}`;
}

// ---------------------------------------------------------------------------------------------
// Existing issuers (files made by certgate or by openssl)

export interface LoadIssuerInput {
  /** The issuer certificate; further certificates in the same PEM are taken as its chain. */
  certPem: string;
  keyPem: string;
  keyPassword?: string;
  /** More of the chain above the issuer (e.g. the intermediate's `chain.pem`). */
  chainPem?: string;
}

/** Parses an issuer from PEM. Checks nothing about its fitness: see `assertUsableIssuer`. */
export function loadIssuer(input: LoadIssuerInput): Issuer & { facts: CertificateFacts } {
  const certs = certificatesFromPem(input.certPem);
  const first = certs[0];
  if (!first) throw new CertsError('CERTIFICATE_UNREADABLE', 'CA certificate file holds no PEM certificate');
  const facts = readCertificate(first, 'CA certificate');
  const chainDer = [...certs];
  for (const der of certificatesFromPem(input.chainPem ?? '')) {
    if (!chainDer.some((c) => Buffer.from(c).equals(Buffer.from(der)))) chainDer.push(der);
  }
  const privateKey = readPrivateKey(input.keyPem, input.keyPassword, 'CA key');
  return { certDer: first, chainDer, privateKey, facts };
}

export interface IssuerCheck {
  /** Default: now. */
  at?: Date;
  /** The certificate to be issued is a CA with this pathLen (undefined = unlimited). */
  issuingCa?: { pathLen?: number };
}

/**
 * Refuses an issuer that would produce a certificate no verifier accepts: a key that is not the
 * certificate's, an issuer that is not a CA (RFC 5280 6.1.4 (k), (n)), one outside its validity
 * (6.1.3 (a)(2)), or a CA under a pathLen that forbids it (6.1.4 (m)).
 */
export function assertUsableIssuer(issuer: Issuer, check: IssuerCheck = {}): CertificateFacts {
  const facts = factsOf(issuer.certDer);
  const at = check.at ?? new Date();
  const who = `CA certificate "${facts.subject}"`;
  if (!keysMatch(issuer.privateKey, facts.publicKey)) {
    throw new CertsError('KEY_MISMATCH', `CA key does not match the ${who}`);
  }
  if (facts.version < 3 || !facts.isCa) {
    throw new CertsError('ISSUER_NOT_A_CA', `${who} is not a CA: it lacks basicConstraints CA:true`);
  }
  if (facts.keyUsage && !facts.keyUsage.includes('keyCertSign')) {
    throw new CertsError('ISSUER_NOT_A_CA', `${who} is not a CA: its keyUsage lacks keyCertSign`);
  }
  if (at.getTime() > facts.notAfter.getTime()) {
    throw new CertsError('ISSUER_EXPIRED', `${who} expired on ${facts.notAfter.toISOString()}`);
  }
  if (at.getTime() < facts.notBefore.getTime()) {
    throw new CertsError('ISSUER_NOT_YET_VALID', `${who} is not valid before ${facts.notBefore.toISOString()}`);
  }
  if (check.issuingCa && facts.pathLen !== undefined) {
    const wanted = check.issuingCa.pathLen;
    if (facts.pathLen === 0) {
      throw new CertsError('ISSUER_PATH_LENGTH', `${who} has pathlen:0 and may not sign another CA`);
    }
    if (wanted !== undefined && wanted > facts.pathLen - 1) {
      throw new CertsError(
        'ISSUER_PATH_LENGTH',
        `path length ${wanted} exceeds what the ${who} allows below it (${facts.pathLen - 1})`,
      );
    }
  }
  return facts;
}

/** True when `privateKey` belongs to the certificate `certDer`. */
export function keyMatchesCertificate(privateKey: KeyObject, certDer: Uint8Array): boolean {
  return keysMatch(privateKey, readCertificate(certDer).publicKey);
}

// ---------------------------------------------------------------------------------------------
// Proof of possession

/**
 * Signs a proof-of-possession verification code: SHA-256 over the code's UTF-8
 * bytes, PKCS#1 v1.5 for RSA and DER-encoded ECDSA for EC, base64. The same bytes as
 * `printf %s CODE | openssl dgst -sha256 -sign ca.key | base64 -w0`.
 */
export function signPopCode(key: KeyObject | string, code: string, keyPassword?: string): string {
  const privateKey = typeof key === 'string' ? readPrivateKey(key, keyPassword, 'CA key') : key;
  if (privateKey.type !== 'private') throw new CertsError('KEY_UNSUPPORTED', 'a private key is needed to sign');
  if (privateKey.asymmetricKeyType !== 'rsa' && privateKey.asymmetricKeyType !== 'ec') {
    throw new CertsError('KEY_UNSUPPORTED', 'proof of possession needs an EC or RSA key');
  }
  return nodeSign('sha256', Buffer.from(code, 'utf8'), privateKey).toString('base64');
}

// ---------------------------------------------------------------------------------------------
// Helpers

const SIGNATURE_OIDS: Record<'rsa' | 'ec', Record<HashAlgorithm, string>> = {
  // RFC 4055 5 / RFC 3279 2.2.1
  rsa: {
    'SHA-1': '1.2.840.113549.1.1.5',
    'SHA-256': '1.2.840.113549.1.1.11',
    'SHA-384': '1.2.840.113549.1.1.12',
    'SHA-512': '1.2.840.113549.1.1.13',
  },
  // RFC 5758 3.2 / RFC 3279 2.2.3
  ec: {
    'SHA-1': '1.2.840.10045.4.1',
    'SHA-256': '1.2.840.10045.4.3.2',
    'SHA-384': '1.2.840.10045.4.3.3',
    'SHA-512': '1.2.840.10045.4.3.4',
  },
};

/**
 * Signs the TBSCertificate through WebCrypto. Done here rather than with `Certificate.sign`
 * because pkijs 4 leaves out the NULL parameters that RFC 4055 5 requires in the RSA
 * AlgorithmIdentifier (ECDSA ones have none, RFC 5758 3.2), and strict parsers reject that.
 */
async function signCertificate(cert: pkijs.Certificate, key: KeyObject, hash: HashAlgorithm): Promise<Uint8Array> {
  const kind = key.asymmetricKeyType === 'rsa' ? 'rsa' : 'ec';
  const signingKey = await toSigningKey(key, hash);
  const algorithm = () =>
    new pkijs.AlgorithmIdentifier({
      algorithmId: SIGNATURE_OIDS[kind][hash],
      ...(kind === 'rsa' ? { algorithmParams: new asn1js.Null() } : {}),
    });
  cert.signature = algorithm();
  cert.signatureAlgorithm = algorithm();
  const tbs = new Uint8Array(cert.encodeTBS().toBER(false));
  cert.tbsView = tbs;
  const raw = new Uint8Array(
    await webcrypto.subtle.sign(
      kind === 'rsa' ? { name: 'RSASSA-PKCS1-v1_5' } : { name: 'ECDSA', hash },
      signingKey,
      tbs,
    ),
  );
  // WebCrypto gives ECDSA as r||s (IEEE P1363); X.509 wants the DER Ecdsa-Sig-Value (RFC 3279 2.2.3).
  const value = kind === 'rsa' ? raw.buffer : pkijs.createCMSECDSASignature(raw.buffer);
  cert.signatureValue = new asn1js.BitString({ valueHex: value });
  return new Uint8Array(cert.toSchema().toBER(false));
}

const factsCache = new WeakMap<Uint8Array, CertificateFacts>();

function factsOf(der: Uint8Array): CertificateFacts {
  let facts = factsCache.get(der);
  if (!facts) {
    facts = readCertificate(der, 'CA certificate');
    factsCache.set(der, facts);
  }
  return facts;
}

function validity(opts: ValidityOptions): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  const days = opts.days ?? 365;
  if (!Number.isFinite(days) || days < 0) throw new CertsError('INVALID_OPTION', `days must be a positive number, not ${days}`);
  const notBefore = opts.notBefore ?? new Date(now - DEFAULT_BACKDATE_MS);
  const notAfter = opts.notAfter ?? new Date((opts.notBefore ? notBefore.getTime() : now) + days * DAY_MS);
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) {
    throw new CertsError('INVALID_OPTION', 'validity dates are not valid dates');
  }
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new CertsError('INVALID_OPTION', 'the certificate would end before it starts (notAfter <= notBefore)');
  }
  return { notBefore, notAfter };
}

/** Drops keys set to undefined, so `{days: undefined}` does not override a preset's default. */
function defined<T extends object>(obj: T): T {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as T;
}

function subjectOf(fields: SubjectFields, defaultCn: string): SubjectSpec {
  return {
    cn: fields.cn ?? defaultCn,
    org: fields.org,
    orgUnit: fields.orgUnit,
    country: fields.country,
    state: fields.state,
    locality: fields.locality,
  };
}

/**
 * An end-entity certificate: 365 days, CA:false and the key usages a TLS key of its type needs
 * (RFC 5246 7.4.2 / RFC 8446 4.4.2.2), unless the overrides say otherwise.
 */
function issueLeaf(
  fields: SubjectFields,
  overrides: Overrides & SubjectFields,
  leaf: { issuer: Issuer; cn: string; san: SanEntry[]; extKeyUsage: readonly string[] | null },
): Promise<Credentials> {
  const kind = overrides.keyPair ? publicKeyOf(overrides.keyPair.publicKey).asymmetricKeyType : (overrides.key ?? 'ec');
  return issueCertificate({
    days: 365,
    basicConstraints: { ca: false, critical: true },
    keyUsage: kind === 'rsa' ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature'],
    extKeyUsage: leaf.extKeyUsage,
    san: leaf.san,
    ...overrides,
    issuer: leaf.issuer,
    subject: subjectOf({ ...fields, cn: leaf.cn }, leaf.cn),
  });
}
