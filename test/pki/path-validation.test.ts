import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  OID,
  SignatureCache,
  TrustStore,
  parseCertificate,
  parseCrl,
  validatePath,
  type ParsedCertificate,
  type TraceStep,
  type ValidatePathOptions,
} from '../../src/pki/index.js';
import type { DenyReason } from '../../src/pki/reasons.js';
import { makeCert, makeCrl, makeIntermediate, makeLeaf, makeRoot, sharedKey, type TestCert } from '../helpers/pki-fixtures.js';

const DAY = 86_400_000;
const ago = (days: number) => new Date(Date.now() - days * DAY);
const ahead = (days: number) => new Date(Date.now() + days * DAY);

/** Validates and returns 'OK' or the reason code, so tables read as expectations. */
function outcome(
  leaf: TestCert,
  presented: TestCert[],
  anchors: TestCert[],
  extra: Partial<ValidatePathOptions> = {},
): 'OK' | DenyReason {
  const r = validatePath({
    leaf: leaf.parsed,
    presented: presented.map((c) => c.parsed),
    anchors: anchors.map((c) => c.parsed),
    ...extra,
  });
  return r.ok ? 'OK' : r.reason;
}

// One shared hierarchy for the cases that only vary the leaf.
const root = makeRoot();
const ica = makeIntermediate(root);
const leaf = makeLeaf(ica);

interface Case {
  name: string;
  build: () => { leaf: TestCert; presented: TestCert[]; anchors: TestCert[]; options?: Partial<ValidatePathOptions> };
  want: 'OK' | DenyReason;
}

const cases: Case[] = [
  // --- building -------------------------------------------------------------------------------
  { name: 'pass/root-leaf', build: () => ({ leaf: makeLeaf(root), presented: [], anchors: [root] }), want: 'OK' },
  { name: 'pass/root-intermediate-leaf', build: () => ({ leaf, presented: [ica], anchors: [root] }), want: 'OK' },
  { name: 'pass/tls-order-with-leaf-first', build: () => ({ leaf, presented: [leaf, ica, root], anchors: [root] }), want: 'OK' },
  { name: 'pass/reverse-order', build: () => ({ leaf, presented: [root, ica, leaf], anchors: [root] }), want: 'OK' },
  {
    name: 'pass/irrelevant-extras-ignored',
    build: () => {
      const other = makeRoot({ subject: 'CN=Other Root' });
      return { leaf, presented: [makeIntermediate(other, { subject: 'CN=Other ICA' }), ica, ica, makeLeaf(other)], anchors: [other, root] };
    },
    want: 'OK',
  },
  { name: 'pass/partial-chain-intermediate-anchor', build: () => ({ leaf, presented: [], anchors: [ica] }), want: 'OK' },
  { name: 'pass/partial-chain-root-also-presented', build: () => ({ leaf, presented: [ica, root], anchors: [ica] }), want: 'OK' },
  { name: 'fail/no-trusted-anchor', build: () => ({ leaf, presented: [ica], anchors: [makeRoot({ subject: 'CN=Unrelated' })] }), want: 'NO_TRUSTED_ANCHOR' },
  { name: 'fail/missing-intermediate', build: () => ({ leaf, presented: [], anchors: [root] }), want: 'NO_TRUSTED_ANCHOR' },
  {
    name: 'fail/same-name-different-key-anchor',
    build: () => ({ leaf: makeLeaf(root), presented: [], anchors: [makeRoot({ authorityKeyId: false })] }),
    want: 'NO_TRUSTED_ANCHOR',
  },
  {
    name: 'pass/alternative-issuer-when-first-is-expired',
    build: () => {
      // Two certificates for the same CA key: one expired, one current (CA renewal).
      const key = sharedKey('ec', 'renewed-ica');
      const expired = makeIntermediate(root, { key, notBefore: ago(400), notAfter: ago(30) });
      const renewed = makeIntermediate(root, { key });
      return { leaf: makeLeaf(renewed), presented: [expired, renewed], anchors: [root] };
    },
    want: 'OK',
  },
  {
    name: 'pass/cross-signed-intermediate-either-root',
    build: () => {
      const key = sharedKey('ec', 'cross-ica');
      const rootB = makeRoot({ subject: 'CN=Root B' });
      const viaA = makeIntermediate(root, { key, subject: 'CN=Cross ICA' });
      const viaB = makeIntermediate(rootB, { key, subject: 'CN=Cross ICA' });
      return { leaf: makeLeaf(viaA), presented: [viaA, viaB], anchors: [rootB] };
    },
    want: 'OK',
  },
  {
    name: 'fail/loop-without-anchor',
    build: () => {
      const ka = sharedKey('ec', 'loop-a');
      const kb = sharedKey('ec', 'loop-b');
      const seedA = makeRoot({ key: ka, subject: 'CN=Loop A' });
      const seedB = makeRoot({ key: kb, subject: 'CN=Loop B' });
      const aByB = makeIntermediate(seedB, { key: ka, subject: 'CN=Loop A' });
      const bByA = makeIntermediate(seedA, { key: kb, subject: 'CN=Loop B' });
      return { leaf: makeLeaf(aByB), presented: [aByB, bByA], anchors: [root] };
    },
    want: 'NO_TRUSTED_ANCHOR',
  },
  {
    name: 'fail/too-many-certificates-presented',
    build: () => ({ leaf, presented: [ica, ...Array.from({ length: 10 }, (_, i) => makeRoot({ subject: `CN=extra ${i}` }))], anchors: [root] }),
    want: 'CHAIN_TOO_LONG',
  },
  {
    name: 'fail/path-longer-than-limit',
    build: () => {
      const chain = [root];
      for (let i = 0; i < 4; i++) chain.push(makeIntermediate(chain[chain.length - 1], { subject: `CN=ICA ${i}` }));
      return { leaf: makeLeaf(chain[chain.length - 1]), presented: chain.slice(1), anchors: [root], options: { maxChainLength: 5 } };
    },
    want: 'CHAIN_TOO_LONG',
  },

  // --- signatures -----------------------------------------------------------------------------
  { name: 'fail/tampered-leaf-signature', build: () => ({ leaf: makeLeaf(ica, { tamperSignature: true }), presented: [ica], anchors: [root] }), want: 'SIGNATURE_INVALID' },
  {
    // pkijs 4's engine ignored the leaf when given [leaf, intermediate] and accepted this.
    name: 'fail/tampered-leaf-signature-tls-order',
    build: () => {
      const bad = makeLeaf(ica, { tamperSignature: true });
      return { leaf: bad, presented: [bad, ica], anchors: [root] };
    },
    want: 'SIGNATURE_INVALID',
  },
  { name: 'fail/tampered-intermediate-signature', build: () => {
      const badIca = makeIntermediate(root, { tamperSignature: true, subject: 'CN=Tampered ICA' });
      return { leaf: makeLeaf(badIca), presented: [badIca], anchors: [root] };
    }, want: 'SIGNATURE_INVALID' },
  {
    // Names the real intermediate (issuer name and key identifier) but is signed by another key.
    name: 'fail/signed-by-impostor-with-same-name',
    build: () => {
      const impostor = makeIntermediate(makeRoot({ subject: 'CN=Evil' }), { subject: 'CN=Evil ICA' });
      const forged = makeLeaf({ ...impostor, subjectNameDer: ica.subjectNameDer, subjectKeyId: ica.subjectKeyId }, { subject: 'CN=forged' });
      return { leaf: forged, presented: [ica], anchors: [root] };
    },
    want: 'SIGNATURE_INVALID',
  },
  { name: 'pass/rsa-2048-chain', build: () => {
      const r = makeRoot({ key: sharedKey('rsa', 'root') });
      return { leaf: makeLeaf(r, { key: sharedKey('rsa', 'leaf') }), presented: [], anchors: [r] };
    }, want: 'OK' },
  { name: 'pass/rsa-pss', build: () => {
      const r = makeRoot({ key: sharedKey('rsa', 'pss-root'), rsaPss: true });
      return { leaf: makeLeaf(r), presented: [], anchors: [r] };
    }, want: 'OK' },
  { name: 'pass/ecdsa-p384-and-p521', build: () => {
      const r = makeRoot({ key: 'ec-p521' });
      const i = makeIntermediate(r, { key: 'ec-p384' });
      return { leaf: makeLeaf(i), presented: [i], anchors: [r] };
    }, want: 'OK' },
  { name: 'pass/ed25519', build: () => {
      const r = makeRoot({ key: 'ed25519' });
      return { leaf: makeLeaf(r, { key: 'ed25519' }), presented: [], anchors: [r] };
    }, want: 'OK' },

  // --- validity -------------------------------------------------------------------------------
  { name: 'fail/expired-leaf', build: () => ({ leaf: makeLeaf(ica, { notBefore: ago(10), notAfter: ago(1) }), presented: [ica], anchors: [root] }), want: 'CERTIFICATE_EXPIRED' },
  { name: 'fail/not-yet-valid-leaf', build: () => ({ leaf: makeLeaf(ica, { notBefore: ahead(1) }), presented: [ica], anchors: [root] }), want: 'CERTIFICATE_NOT_YET_VALID' },
  { name: 'fail/expired-intermediate', build: () => {
      const old = makeIntermediate(root, { notBefore: ago(100), notAfter: ago(1), subject: 'CN=Old ICA' });
      return { leaf: makeLeaf(old, { notBefore: ago(50) }), presented: [old], anchors: [root] };
    }, want: 'ISSUER_EXPIRED' },
  { name: 'fail/expired-root', build: () => {
      const oldRoot = makeRoot({ notBefore: ago(100), notAfter: ago(1), subject: 'CN=Old Root' });
      return { leaf: makeLeaf(oldRoot, { notBefore: ago(50) }), presented: [], anchors: [oldRoot] };
    }, want: 'ISSUER_EXPIRED' },
  { name: 'fail/not-yet-valid-intermediate', build: () => {
      const early = makeIntermediate(root, { notBefore: ahead(2), subject: 'CN=Future ICA' });
      return { leaf: makeLeaf(early), presented: [early], anchors: [root] };
    }, want: 'CERTIFICATE_NOT_YET_VALID' },
  { name: 'pass/check-time-parameter', build: () => {
      const r = makeRoot({ subject: 'CN=Long-lived Root', notBefore: ago(30) });
      return { leaf: makeLeaf(r, { notBefore: ago(10), notAfter: ago(1) }), presented: [], anchors: [r], options: { now: ago(5) } };
    }, want: 'OK' },

  // --- basic constraints and path length ------------------------------------------------------
  { name: 'fail/intermediate-not-a-ca', build: () => {
      const notCa = makeCert({ issuer: root, subject: 'CN=Not a CA', basicConstraints: { ca: false, critical: true }, keyUsage: ['digitalSignature'] });
      return { leaf: makeLeaf(notCa), presented: [notCa], anchors: [root] };
    }, want: 'NOT_A_CA' },
  { name: 'fail/intermediate-without-basic-constraints', build: () => {
      const noBc = makeCert({ issuer: root, subject: 'CN=No BC', keyUsage: false });
      return { leaf: makeLeaf(noBc), presented: [noBc], anchors: [root] };
    }, want: 'NOT_A_CA' },
  { name: 'fail/v1-intermediate', build: () => {
      const v1 = makeCert({ issuer: root, subject: 'CN=V1 ICA', version: 1 });
      return { leaf: makeLeaf(v1, { authorityKeyId: false }), presented: [v1], anchors: [root] };
    }, want: 'NOT_A_CA' },
  {
    // ThingsBoard's guide: `openssl x509 -req -extfile <(echo "basicConstraints=CA:TRUE")`.
    name: 'pass/intermediate-basic-constraints-not-critical', build: () => {
      const soft = makeIntermediate(root, { subject: 'CN=Soft BC', basicConstraints: { ca: true, critical: false } });
      return { leaf: makeLeaf(soft), presented: [soft], anchors: [root] };
    }, want: 'OK' },
  { name: 'fail/root-basic-constraints-not-critical', build: () => {
      const softRoot = makeRoot({ subject: 'CN=Soft Root', basicConstraints: { ca: true, critical: false } });
      return { leaf: makeLeaf(softRoot), presented: [], anchors: [softRoot] };
    }, want: 'NOT_A_CA' },
  { name: 'pass/v1-leaf', build: () => ({ leaf: makeLeaf(ica, { version: 1 }), presented: [ica], anchors: [root] }), want: 'OK' },
  { name: 'pass/pathlen-0-then-leaf', build: () => {
      const i0 = makeIntermediate(root, { pathLen: 0, subject: 'CN=PL0' });
      return { leaf: makeLeaf(i0), presented: [i0], anchors: [root] };
    }, want: 'OK' },
  {
    // pkijs 4's engine accepted this.
    name: 'fail/pathlen-0-violated',
    build: () => {
      const i0 = makeIntermediate(root, { pathLen: 0, subject: 'CN=PL0' });
      const i1 = makeIntermediate(i0, { subject: 'CN=Below PL0' });
      return { leaf: makeLeaf(i1), presented: [i1, i0], anchors: [root] };
    },
    want: 'PATH_LENGTH_EXCEEDED',
  },
  { name: 'fail/pathlen-on-root-violated', build: () => {
      const r0 = makeRoot({ subject: 'CN=Root PL0', basicConstraints: { ca: true, pathLen: 0, critical: true } });
      const i = makeIntermediate(r0);
      return { leaf: makeLeaf(i), presented: [i], anchors: [r0] };
    }, want: 'PATH_LENGTH_EXCEEDED' },
  { name: 'pass/pathlen-1-two-levels', build: () => {
      const i1 = makeIntermediate(root, { pathLen: 1, subject: 'CN=PL1' });
      const i2 = makeIntermediate(i1, { subject: 'CN=Issuing' });
      return { leaf: makeLeaf(i2), presented: [i2, i1], anchors: [root] };
    }, want: 'OK' },
  { name: 'pass/self-issued-intermediate-not-counted', build: () => {
      const i0 = makeIntermediate(root, { pathLen: 0, subject: 'CN=Rollover' });
      const rolled = makeIntermediate(i0, { subject: 'CN=Rollover', pathLen: 0 });
      return { leaf: makeLeaf(rolled), presented: [rolled, i0], anchors: [root] };
    }, want: 'OK' },

  // --- key usage ------------------------------------------------------------------------------
  { name: 'fail/intermediate-without-keycertsign', build: () => {
      const i = makeIntermediate(root, { subject: 'CN=CRL only', keyUsage: ['cRLSign'] });
      return { leaf: makeLeaf(i), presented: [i], anchors: [root] };
    }, want: 'KEY_USAGE_INVALID' },
  { name: 'fail/leaf-without-digital-signature', build: () => ({ leaf: makeLeaf(ica, { keyUsage: ['keyEncipherment'] }), presented: [ica], anchors: [root] }), want: 'KEY_USAGE_INVALID' },
  { name: 'fail/leaf-keycertsign-without-ca', build: () => ({ leaf: makeLeaf(ica, { keyUsage: ['digitalSignature', 'keyCertSign'] }), presented: [ica], anchors: [root] }), want: 'KEY_USAGE_INVALID' },
  { name: 'pass/leaf-without-key-usage', build: () => ({ leaf: makeLeaf(ica, { keyUsage: false }), presented: [ica], anchors: [root] }), want: 'OK' },

  // --- extended key usage ---------------------------------------------------------------------
  { name: 'pass/leaf-without-eku', build: () => ({ leaf: makeLeaf(ica, { extKeyUsage: false }), presented: [ica], anchors: [root] }), want: 'OK' },
  { name: 'pass/leaf-any-eku', build: () => ({ leaf: makeLeaf(ica, { extKeyUsage: ['anyExtendedKeyUsage'] }), presented: [ica], anchors: [root] }), want: 'OK' },
  { name: 'fail/leaf-server-auth-only', build: () => ({ leaf: makeLeaf(ica, { extKeyUsage: ['serverAuth'] }), presented: [ica], anchors: [root] }), want: 'EXTENDED_KEY_USAGE_INVALID' },
  { name: 'pass/server-auth-when-required', build: () => ({
      leaf: makeLeaf(ica, { extKeyUsage: ['serverAuth'] }),
      presented: [ica],
      anchors: [root],
      options: { requiredEku: OID.serverAuth },
    }), want: 'OK' },
  { name: 'fail/intermediate-eku-excludes-client-auth', build: () => {
      const i = makeIntermediate(root, { subject: 'CN=Servers only', extKeyUsage: ['serverAuth'] });
      return { leaf: makeLeaf(i), presented: [i], anchors: [root] };
    }, want: 'EXTENDED_KEY_USAGE_INVALID' },
  { name: 'fail/leaf-critical-eku', build: () => ({ leaf: makeLeaf(ica, { extKeyUsageCritical: true }), presented: [ica], anchors: [root] }), want: 'EXTENDED_KEY_USAGE_INVALID' },
  { name: 'fail/leaf-empty-eku', build: () => ({ leaf: makeLeaf(ica, { extKeyUsage: [] }), presented: [ica], anchors: [root] }), want: 'EXTENDED_KEY_USAGE_INVALID' },

  // --- name constraints -----------------------------------------------------------------------
  ...nameConstraintCases(),

  // --- critical extensions and profile --------------------------------------------------------
  { name: 'fail/unknown-critical-extension-leaf', build: () => ({ leaf: makeLeaf(ica, { unknownCriticalExtension: true }), presented: [ica], anchors: [root] }), want: 'UNKNOWN_CRITICAL_EXTENSION' },
  { name: 'fail/unknown-critical-extension-intermediate', build: () => {
      const i = makeIntermediate(root, { subject: 'CN=Odd ICA', unknownCriticalExtension: true });
      return { leaf: makeLeaf(i), presented: [i], anchors: [root] };
    }, want: 'UNKNOWN_CRITICAL_EXTENSION' },
  { name: 'fail/unknown-critical-extension-anchor', build: () => {
      const r = makeRoot({ subject: 'CN=Odd Root', unknownCriticalExtension: true });
      return { leaf: makeLeaf(r), presented: [], anchors: [r] };
    }, want: 'UNKNOWN_CRITICAL_EXTENSION' },
  { name: 'pass/unknown-critical-extension-unused-intermediate', build: () => ({
      leaf,
      presented: [ica, makeIntermediate(root, { subject: 'CN=Unused', unknownCriticalExtension: true })],
      anchors: [root],
    }), want: 'OK' },
  { name: 'fail/intermediate-without-ski', build: () => {
      const i = makeIntermediate(root, { subject: 'CN=No SKI', subjectKeyId: false });
      return { leaf: makeLeaf(i), presented: [i], anchors: [root] };
    }, want: 'MALFORMED_CERTIFICATE' },
  { name: 'fail/leaf-without-aki', build: () => ({ leaf: makeLeaf(ica, { authorityKeyId: false }), presented: [ica], anchors: [root] }), want: 'MALFORMED_CERTIFICATE' },
  { name: 'fail/leaf-serial-zero', build: () => ({ leaf: makeLeaf(ica, { serial: 0 }), presented: [ica], anchors: [root] }), want: 'MALFORMED_CERTIFICATE' },
  { name: 'fail/leaf-serial-negative', build: () => ({ leaf: makeLeaf(ica, { serial: Uint8Array.of(0x80, 0x01) }), presented: [ica], anchors: [root] }), want: 'MALFORMED_CERTIFICATE' },

  // --- strength -------------------------------------------------------------------------------
  { name: 'fail/rsa-1024-leaf', build: () => ({ leaf: makeLeaf(ica, { key: sharedKey('rsa-1024') }), presented: [ica], anchors: [root] }), want: 'WEAK_KEY' },
  { name: 'fail/rsa-1024-intermediate', build: () => {
      const i = makeIntermediate(root, { subject: 'CN=Weak ICA', key: sharedKey('rsa-1024', 'ica') });
      return { leaf: makeLeaf(i), presented: [i], anchors: [root] };
    }, want: 'WEAK_KEY' },
  { name: 'fail/p192-leaf', build: () => ({ leaf: makeLeaf(ica, { key: 'ec-p192' }), presented: [ica], anchors: [root] }), want: 'WEAK_KEY' },
  { name: 'fail/sha1-signed-leaf', build: () => ({ leaf: makeLeaf(ica, { signatureHash: 'SHA-1' }), presented: [ica], anchors: [root] }), want: 'WEAK_SIGNATURE_ALGORITHM' },
  { name: 'fail/sha1-signed-intermediate', build: () => {
      const i = makeIntermediate(root, { subject: 'CN=SHA1 ICA', signatureHash: 'SHA-1' });
      return { leaf: makeLeaf(i), presented: [i], anchors: [root] };
    }, want: 'WEAK_SIGNATURE_ALGORITHM' },
  { name: 'pass/sha1-self-signature-of-anchor-not-relied-on', build: () => {
      const r = makeRoot({ subject: 'CN=Old SHA1 Root', signatureHash: 'SHA-1' });
      return { leaf: makeLeaf(r), presented: [], anchors: [r] };
    }, want: 'OK' },

  // --- revocation -----------------------------------------------------------------------------
  { name: 'fail/revoked-by-lookup', build: () => ({
      leaf,
      presented: [ica],
      anchors: [root],
      options: { isRevoked: (c: ParsedCertificate) => c.serialNumberHex === leaf.parsed.serialNumberHex },
    }), want: 'CERTIFICATE_REVOKED' },
  { name: 'fail/intermediate-revoked-by-lookup', build: () => ({
      leaf,
      presented: [ica],
      anchors: [root],
      options: { isRevoked: (c: ParsedCertificate, issuer: ParsedCertificate) => issuer.sha256 === root.parsed.sha256 && c.sha256 === ica.parsed.sha256 },
    }), want: 'CERTIFICATE_REVOKED' },
  { name: 'fail/revoked-by-crl', build: () => ({
      leaf,
      presented: [ica],
      anchors: [root],
      options: { crls: [parseCrl(makeCrl({ issuer: ica, revoked: [{ serialHex: leaf.serialHex }] }).pem)] },
    }), want: 'CERTIFICATE_REVOKED' },
  { name: 'pass/crl-without-the-leaf', build: () => ({
      leaf,
      presented: [ica],
      anchors: [root],
      options: { crls: [parseCrl(makeCrl({ issuer: ica, revoked: [{ serialHex: '01' }] }).der)] },
    }), want: 'OK' },
  { name: 'fail/forged-crl', build: () => ({
      leaf,
      presented: [ica],
      anchors: [root],
      options: { crls: [parseCrl(makeCrl({ issuer: ica, signingKey: sharedKey('ec', 'forger') }).pem)] },
    }), want: 'SIGNATURE_INVALID' },
];

function nameConstraintCases(): Case[] {
  const constrained = (nameConstraints: NonNullable<Parameters<typeof makeIntermediate>[1]>['nameConstraints'], subject = 'CN=Constrained ICA') =>
    makeIntermediate(root, { subject, nameConstraints });
  const withLeaf = (i: TestCert, spec: Parameters<typeof makeLeaf>[1]) => ({ leaf: makeLeaf(i, spec), presented: [i], anchors: [root] });
  return [
    { name: 'pass/nc-permitted-dns', build: () => withLeaf(constrained({ permitted: { dns: ['acme.com'] } }), { san: { dns: ['d1.devices.acme.com'] } }), want: 'OK' },
    { name: 'fail/nc-permitted-dns-mismatch', build: () => withLeaf(constrained({ permitted: { dns: ['acme.com'] } }), { san: { dns: ['evil.com'] } }), want: 'NAME_CONSTRAINTS_VIOLATED' },
    { name: 'fail/nc-dns-label-boundary', build: () => withLeaf(constrained({ permitted: { dns: ['acme.com'] } }), { san: { dns: ['notacme.com'] } }), want: 'NAME_CONSTRAINTS_VIOLATED' },
    { name: 'fail/nc-excluded-dns', build: () => withLeaf(constrained({ excluded: { dns: ['blocked.acme.com'] } }), { san: { dns: ['x.blocked.acme.com'] } }), want: 'NAME_CONSTRAINTS_VIOLATED' },
    { name: 'pass/nc-permitted-uri-spiffe', build: () => withLeaf(constrained({ permitted: { uri: ['acme.com'] } }), { san: { uri: ['spiffe://acme.com/device/d1'] } }), want: 'OK' },
    { name: 'fail/nc-permitted-uri-other-trust-domain', build: () => withLeaf(constrained({ permitted: { uri: ['acme.com'] } }), { san: { uri: ['spiffe://evil.com/device/d1'] } }), want: 'NAME_CONSTRAINTS_VIOLATED' },
    { name: 'pass/nc-permitted-email-domain', build: () => withLeaf(constrained({ permitted: { email: ['acme.com'] } }), { san: { email: ['ops@acme.com'] } }), want: 'OK' },
    { name: 'fail/nc-excluded-email', build: () => withLeaf(constrained({ excluded: { email: ['ops@acme.com'] } }), { san: { email: ['ops@acme.com'] } }), want: 'NAME_CONSTRAINTS_VIOLATED' },
    { name: 'pass/nc-permitted-ip', build: () => withLeaf(constrained({ permitted: { ip: ['10.0.0.0/8'] } }), { san: { ip: ['10.1.2.3'] } }), want: 'OK' },
    { name: 'fail/nc-permitted-ip-mismatch', build: () => withLeaf(constrained({ permitted: { ip: ['10.0.0.0/8'] } }), { san: { ip: ['192.0.2.1'] } }), want: 'NAME_CONSTRAINTS_VIOLATED' },
    { name: 'fail/nc-excluded-ipv6', build: () => withLeaf(constrained({ excluded: { ip: ['2001:db8::/32'] } }), { san: { ip: ['2001:db8::1'] } }), want: 'NAME_CONSTRAINTS_VIOLATED' },
    { name: 'pass/nc-permitted-dirname-subject', build: () => withLeaf(constrained({ permitted: { dirNames: ['O=Acme'] } }), { subject: 'CN=d1,OU=Line 1,O=Acme' }), want: 'OK' },
    { name: 'fail/nc-permitted-dirname-subject-mismatch', build: () => withLeaf(constrained({ permitted: { dirNames: ['O=Acme'] } }), { subject: 'CN=d1,O=Evil' }), want: 'NAME_CONSTRAINTS_VIOLATED' },
    { name: 'fail/nc-excluded-dirname', build: () => withLeaf(constrained({ excluded: { dirNames: ['OU=Blocked,O=Acme'] } }), { subject: 'CN=d1,OU=Blocked,O=Acme' }), want: 'NAME_CONSTRAINTS_VIOLATED' },
    { name: 'pass/nc-other-form-unconstrained', build: () => withLeaf(constrained({ permitted: { dns: ['acme.com'] } }), { san: { uri: ['spiffe://anything/device/d1'] } }), want: 'OK' },
    { name: 'fail/nc-on-root-applies-to-intermediate', build: () => {
        const r = makeRoot({ subject: 'CN=Constrained Root', nameConstraints: { permitted: { dirNames: ['O=Acme'] } } });
        const i = makeIntermediate(r, { subject: 'CN=ICA,O=Evil' });
        return { leaf: makeLeaf(i, { subject: 'CN=d1,O=Acme' }), presented: [i], anchors: [r] };
      }, want: 'NAME_CONSTRAINTS_VIOLATED' },
    { name: 'fail/nc-not-critical', build: () => withLeaf(constrained({ permitted: { dns: ['acme.com'] }, critical: false }), { san: { dns: ['d.acme.com'] } }), want: 'NAME_CONSTRAINTS_VIOLATED' },
    { name: 'fail/nc-wildcard-san-may-hit-excluded', build: () => withLeaf(constrained({ excluded: { dns: ['secret.acme.com'] } }), { san: { dns: ['*.acme.com'] } }), want: 'NAME_CONSTRAINTS_VIOLATED' },
  ];
}

describe('validatePath (RFC 5280 6.1)', () => {
  for (const c of cases) {
    it(c.name, () => {
      const { leaf: l, presented, anchors, options } = c.build();
      assert.equal(outcome(l, presented, anchors, options), c.want);
    });
  }

  it('decides every case the same when its signatures were kept from an earlier decision', () => {
    for (const c of cases) {
      const { leaf: l, presented, anchors, options } = c.build();
      const cache = new SignatureCache();
      assert.equal(outcome(l, presented, anchors, { ...options, signatureCache: cache }), c.want, c.name);
      assert.equal(outcome(l, presented, anchors, { ...options, signatureCache: cache }), c.want, `${c.name}, again`);
    }
  });

  it('keeps each (issuer, subject) signature once, a failed check as failed, a CA presented and trusted as one', () => {
    const cache = new SignatureCache();
    // The device presents its CA, the tenant trusts the same CA: two parses, one certificate.
    const presentedCa = parseCertificate(ica.der);
    const trustedCa = parseCertificate(ica.der);
    assert.notEqual(presentedCa, trustedCa);
    const l = makeLeaf(ica, { subject: 'CN=presented and trusted' });
    assert.ok(validatePath({ leaf: l.parsed, presented: [presentedCa], anchors: [trustedCa], signatureCache: cache }).ok);
    assert.equal(cache.size, 1);
    assert.ok(cache.has(presentedCa, l.parsed) && cache.has(trustedCa, l.parsed));
    assert.ok(validatePath({ leaf: l.parsed, presented: [trustedCa], anchors: [presentedCa], signatureCache: cache }).ok);
    assert.equal(cache.size, 1);

    const tampered = makeLeaf(ica, { tamperSignature: true, subject: 'CN=tampered' });
    for (let i = 0; i < 2; i++) {
      const r = validatePath({ leaf: tampered.parsed, presented: [ica.parsed], anchors: [root.parsed], signatureCache: cache });
      assert.ok(!r.ok && r.reason === 'SIGNATURE_INVALID');
      assert.ok(cache.has(ica.parsed, tampered.parsed));
      assert.equal(cache.verify(ica.parsed, tampered.parsed), false);
    }
  });

  it('returns the path leaf first and the anchor', () => {
    const r = validatePath({ leaf: leaf.parsed, presented: [root.parsed, ica.parsed], anchors: [root.parsed] });
    assert.ok(r.ok);
    assert.deepEqual(r.path.map((c) => c.sha256), [leaf.parsed.sha256, ica.parsed.sha256, root.parsed.sha256]);
    assert.equal(r.anchor.sha256, root.parsed.sha256);
  });

  it('explains the decision step by step', () => {
    const trace: TraceStep[] = [];
    assert.ok(validatePath({ leaf: leaf.parsed, presented: [ica.parsed], anchors: [root.parsed], trace }).ok);
    const steps = trace.map((s) => s.step);
    for (const s of ['chain', 'anchor', 'signature', 'validity', 'basic-constraints', 'path-length', 'key-usage', 'extended-key-usage']) {
      assert.ok(steps.includes(s), `missing step ${s}`);
    }
    assert.ok(trace.every((s) => s.ok));

    const failed: TraceStep[] = [];
    const expired = makeLeaf(ica, { notBefore: ago(10), notAfter: ago(1) });
    const r = validatePath({ leaf: expired.parsed, presented: [ica.parsed], anchors: [root.parsed], trace: failed });
    assert.ok(!r.ok);
    const last = failed[failed.length - 1];
    assert.equal(last.step, 'validity');
    assert.equal(last.ok, false);
    assert.match(last.detail, /expired/);
    assert.match(r.detail, /CN=device-1/);
  });

  it('accepts a TrustStore and a filter on anchors', () => {
    const store = new TrustStore([root.parsed, makeRoot({ subject: 'CN=Other' }).parsed]);
    assert.equal(store.size, 2);
    assert.equal(store.issuersOf(ica.parsed).length, 1);
    assert.ok(validatePath({ leaf: leaf.parsed, presented: [ica.parsed], anchors: store }).ok);
    const r = validatePath({ leaf: leaf.parsed, presented: [ica.parsed], anchors: store, acceptAnchor: (a) => a.sha256 !== root.parsed.sha256 });
    assert.ok(!r.ok && r.reason === 'NO_TRUSTED_ANCHOR');
    assert.ok(store.delete(root.parsed.sha1));
    assert.equal(store.size, 1);
  });

  it('checks each issuer-subject signature once', () => {
    const cache = new SignatureCache();
    const opts = { leaf: leaf.parsed, presented: [ica.parsed], anchors: [root.parsed], signatureCache: cache };
    assert.ok(validatePath(opts).ok);
    const size = cache.size;
    assert.ok(cache.has(ica.parsed, leaf.parsed) && cache.has(root.parsed, ica.parsed));
    assert.ok(validatePath(opts).ok);
    assert.equal(cache.size, size);
    // A new leaf under the same CA adds exactly one entry.
    assert.ok(validatePath({ ...opts, leaf: makeLeaf(ica, { subject: 'CN=device-2' }).parsed }).ok);
    assert.equal(cache.size, size + 1);
  });

  it('keeps at most its capacity of checked signatures and still answers the ones it keeps', () => {
    const cache = new SignatureCache(8);
    const leaves = Array.from({ length: 30 }, (_, i) => makeLeaf(ica, { subject: `CN=device-${i}` }).parsed);
    for (const l of leaves) {
      assert.equal(cache.verify(ica.parsed, l), true);
      assert.ok(cache.size <= 8, `size ${cache.size}`);
    }
    assert.ok(cache.has(ica.parsed, leaves.at(-1)!));
    assert.ok(!cache.has(ica.parsed, leaves[0]!));
  });

  it('never throws for corrupted certificates that still parse', () => {
    let parsedCount = 0;
    for (let i = 0; i < 1500; i++) {
      const victim = [leaf, ica, root][i % 3];
      const copy = new Uint8Array(victim.der);
      copy[Math.floor(Math.random() * copy.length)] ^= 1 << (i % 8);
      let c: ParsedCertificate;
      try {
        c = parseCertificate(copy);
      } catch {
        continue;
      }
      parsedCount++;
      const set = [leaf.parsed, ica.parsed, root.parsed].map((x) => (x.sha256 === victim.parsed.sha256 ? c : x));
      const r = validatePath({ leaf: set[0], presented: [set[1]], anchors: [set[2]] });
      // Any change to a signed certificate breaks its signature; only the trust anchor, taken as
      // given, may change (e.g. its own signature or validity) and still end a valid path.
      if (r.ok) assert.equal(victim, root, `accepted a corrupted ${victim === leaf ? 'leaf' : 'intermediate'}`);
    }
    assert.ok(parsedCount > 100);
  });

  it('never throws on a hostile path (a CA chain of certificates sharing one name and key)', () => {
    const key = sharedKey('ec', 'pathological');
    const ring: TestCert[] = [makeRoot({ key, subject: 'CN=Same' })];
    for (let i = 0; i < 8; i++) ring.push(makeIntermediate(ring[ring.length - 1], { key, subject: 'CN=Same' }));
    const r = validatePath({ leaf: makeLeaf(ring[ring.length - 1]).parsed, presented: ring.map((c) => c.parsed), anchors: [root.parsed] });
    assert.ok(!r.ok && r.reason === 'NO_TRUSTED_ANCHOR');
  });
});
