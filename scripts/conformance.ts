/**
 * x509-limbo conformance: runs the name-agnostic limbo cases through the same `src/pki` path
 * validation the verifier uses, and reports agreement. `npm run conformance` prints every
 * disagreement with a one-line reason and, as its last line, `limbo: <agree>/<total> agree`.
 *
 * Mapping of a case: trusted_certs are the trust anchors; untrusted_intermediates plus
 * peer_certificate are the chain a device presents; validation_time (null = now) is the clock;
 * max_chain_depth limits intermediates; validation_kind SERVER/CLIENT selects the required
 * extended key usage (serverAuth/clientAuth) unless extended_key_usage names one; key_usage lists
 * what the leaf must assert; CRLs are applied. Peer-name matching is not part of device identity,
 * so hostname-only families are left out (see /work/shared/x509-limbo/README.md).
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import {
  OID,
  SignatureCache,
  TrustStore,
  parseCertificate,
  parseCrl,
  validatePath,
  type KeyUsage,
  type ParsedCertificate,
  type ParsedCrl,
} from '../src/pki/index.js';

export const LIMBO_PATH = process.env.LIMBO_PATH ?? '/work/shared/x509-limbo/limbo.json';

/** Families whose outcome depends only on peer-name matching. */
const NAME_FAMILIES = ['webpki::cn::', 'webpki::san::', 'rfc5280::san::'];

/**
 * Cases where certgate disagrees with limbo on purpose (also in src/pki/LIMBO.md). Each pair of
 * conflicting cases (limbo's `conflicts_with`) costs one, whichever side is chosen.
 */
export const DELIBERATE: Readonly<Record<string, string>> = {
  'webpki::v1-cert': 'X.509 v1 leaves (no extensions) are accepted: `openssl x509 -req` makes them and the ThingsBoard and eACM guides use it',
  'webpki::eku::ee-without-eku': 'RFC 5280 4.2.1.12 makes extendedKeyUsage optional; most device certificates have none (conflicts with rfc5280::eku::ee-without-eku)',
  'webpki::eku::ee-anyeku': 'anyExtendedKeyUsage in a leaf satisfies the required usage (RFC 5280 4.2.1.12); CA/B server rules do not bind device certificates',
  'webpki::eku::root-has-eku': 'an anchor with extendedKeyUsage is accepted when the list allows the required usage; device CAs commonly restrict themselves to clientAuth',
  'webpki::nc::permitted-dns-match-noncritical': 'RFC 5280 4.2.1.10 requires nameConstraints to be critical; the CA/B exception for legacy web clients is not taken (conflicts with rfc5280::nc::permitted-dns-match-noncritical)',
  'webpki::ca-as-leaf': 'RFC 5280 does not forbid a CA certificate in leaf position (conflicts with rfc5280::ca-as-leaf); a device leaf must still assert digitalSignature when it has keyUsage',
  'rfc5280::aki::cross-signed-root-missing-aki': 'a trust anchor is its name and key (RFC 5280 6.1.1 (d)), so a trusted intermediate without authorityKeyIdentifier is accepted; cve::cve-2024-0567 expects SUCCESS for an anchor of the same shape',
  'rfc5280::ca-as-leaf-wrong-san': 'fails only on the expected peer name, which certgate does not match: device identity is not a host name',
};

export interface LimboCase {
  id: string;
  description?: string;
  validation_kind: 'SERVER' | 'CLIENT';
  trusted_certs: string[];
  untrusted_intermediates: string[];
  peer_certificate: string;
  validation_time: string | null;
  max_chain_depth: number | null;
  extended_key_usage: string[];
  key_usage: string[];
  crls: string[];
  expected_result: 'SUCCESS' | 'FAILURE';
}

export interface CaseOutcome {
  id: string;
  expected: 'SUCCESS' | 'FAILURE';
  actual: 'SUCCESS' | 'FAILURE';
  /** Reason code and detail of a failure. */
  why: string;
  deliberate?: string;
}

export interface LimboReport {
  total: number;
  agree: number;
  disagreements: CaseOutcome[];
}

const EKU_BY_NAME: Readonly<Record<string, string>> = {
  serverAuth: OID.serverAuth,
  clientAuth: OID.clientAuth,
  codeSigning: OID.codeSigning,
  emailProtection: OID.emailProtection,
  timeStamping: OID.timeStamping,
  OCSPSigning: OID.ocspSigning,
  anyExtendedKeyUsage: OID.anyExtendedKeyUsage,
};

export function loadLimboCases(path: string = LIMBO_PATH): LimboCase[] {
  const doc = JSON.parse(readFileSync(path, 'utf8')) as { testcases: LimboCase[] };
  return doc.testcases.filter((c) => !NAME_FAMILIES.some((p) => c.id.startsWith(p)));
}

function tryParse(pem: string): ParsedCertificate | null {
  try {
    return parseCertificate(pem);
  } catch {
    return null;
  }
}

/** Runs one case; returns SUCCESS/FAILURE with the validator's reason. */
export function runCase(c: LimboCase, signatureCache = new SignatureCache()): { actual: 'SUCCESS' | 'FAILURE'; why: string } {
  const leaf = tryParse(c.peer_certificate);
  if (!leaf) return { actual: 'FAILURE', why: 'MALFORMED_CERTIFICATE: peer certificate does not parse' };
  const anchors = new TrustStore(c.trusted_certs.map(tryParse).filter((x): x is ParsedCertificate => x !== null));
  const presented = c.untrusted_intermediates.map(tryParse).filter((x): x is ParsedCertificate => x !== null);
  let crls: ParsedCrl[];
  try {
    crls = c.crls.map((p) => parseCrl(p));
  } catch (e) {
    return { actual: 'FAILURE', why: `CRL does not parse: ${(e as Error).message}` };
  }
  const requiredEku = c.extended_key_usage.length
    ? (EKU_BY_NAME[c.extended_key_usage[0]] ?? c.extended_key_usage[0])
    : c.validation_kind === 'SERVER'
      ? OID.serverAuth
      : OID.clientAuth;
  const result = validatePath({
    leaf,
    presented: [leaf, ...presented],
    anchors,
    now: c.validation_time ? new Date(c.validation_time) : new Date(),
    ...(c.max_chain_depth !== null ? { maxIntermediates: c.max_chain_depth } : {}),
    requiredEku,
    requiredKeyUsage: c.key_usage as KeyUsage[],
    crls,
    signatureCache,
  });
  return result.ok
    ? { actual: 'SUCCESS', why: `path of ${result.path.length} to "${result.anchor.subject}"` }
    : { actual: 'FAILURE', why: `${result.reason}: ${result.detail}` };
}

export function runLimbo(path: string = LIMBO_PATH): LimboReport {
  const cases = loadLimboCases(path);
  const cache = new SignatureCache();
  const disagreements: CaseOutcome[] = [];
  for (const c of cases) {
    const { actual, why } = runCase(c, cache);
    if (actual !== c.expected_result) {
      disagreements.push({ id: c.id, expected: c.expected_result, actual, why, ...(DELIBERATE[c.id] ? { deliberate: DELIBERATE[c.id] } : {}) });
    }
  }
  return { total: cases.length, agree: cases.length - disagreements.length, disagreements };
}

function main(): void {
  const started = performance.now();
  const report = runLimbo();
  for (const d of report.disagreements) {
    const head = `${d.deliberate ? 'deliberate' : 'DISAGREE'} ${d.id}: expected ${d.expected}, got ${d.actual}`;
    console.log(d.deliberate ? `${head} -- ${d.deliberate}` : `${head} -- ${d.why}`);
  }
  console.log(`(${report.total} cases in ${Math.round(performance.now() - started)} ms)`);
  console.log(`limbo: ${report.agree}/${report.total} agree`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
