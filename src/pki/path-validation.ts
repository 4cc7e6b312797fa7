/**
 * Certification path building and validation (RFC 5280 6.1) for device client certificates.
 *
 * Everything comes in as parameters: the leaf, whatever chain the device presented (any order,
 * extras allowed), the trust anchors, the clock, the required extended key usage, revocation
 * inputs. The result is `{ok:true, path, anchor}` or `{ok:false, reason, detail}` with a contract
 * reason code; a bad certificate never throws.
 *
 * Path building is a depth-first search over candidate issuers (name match, key identifier
 * match, verified signature), preferring trust anchors, and bounded three ways: path length,
 * certificates presented, and a budget of expansions and signature checks. A trust anchor may be
 * an intermediate (partial chain, like `openssl verify -partial_chain`): the path stops at the
 * first trusted certificate. The anchor certificate's own constraints (validity, basic
 * constraints, key usage, name constraints, critical extensions, key strength) are enforced as
 * RFC 5937 allows; its self-signature is not relied on and not required to be strong.
 *
 * Speed: signatures are memoised per (issuer, subject) pair of fingerprints, and callers keep
 * parsed anchors in a `TrustStore`, so a new leaf under a known CA costs one parse and one
 * signature check.
 */
import { GenerationalCache } from '../lib/generational-cache.js';
import type { DenyReason } from './reasons.js';
import { checkKeyStrength, checkSignatureStrength } from './ca-rules.js';
import { signedBy, type KeyUsage, type ParsedCertificate } from './certificate.js';
import { normalizeSerialHex, verifyCrlSignature, type CrlCheck, type ParsedCrl } from './crl.js';
import { checkNameConstraints, MAX_CONSTRAINT_COMPARISONS, type ComparisonBudget } from './name-constraints.js';
import { OID, ekuName } from './oids.js';

export interface TraceStep {
  readonly step: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** Where path building looks for trust anchors. `TrustStore` is the ready-made one. */
export interface AnchorSource {
  /** Anchors whose subject matches the issuer name of `cert` (signatures are checked by the caller). */
  issuersOf(cert: ParsedCertificate): readonly ParsedCertificate[];
  /** Whether this exact certificate is a trust anchor. */
  isAnchor(cert: ParsedCertificate): boolean;
}

/**
 * Parsed trust anchors indexed by subject name and fingerprint: build it once per set of enabled
 * CAs and reuse it for every request.
 */
export class TrustStore implements AnchorSource {
  readonly #bySubject = new Map<string, ParsedCertificate[]>();
  readonly #bySha256 = new Map<string, ParsedCertificate>();
  readonly #bySki = new Map<string, ParsedCertificate[]>();

  constructor(anchors: Iterable<ParsedCertificate> = []) {
    for (const a of anchors) this.add(a);
  }

  add(cert: ParsedCertificate): void {
    if (this.#bySha256.has(cert.sha256)) return;
    this.#bySha256.set(cert.sha256, cert);
    push(this.#bySubject, cert.subjectName.key, cert);
    if (cert.subjectKeyId) push(this.#bySki, cert.subjectKeyId, cert);
  }

  /** Removes an anchor by its SHA-256 (credentialsId) or SHA-1 (fingerprint) hex. */
  delete(fingerprint: string): boolean {
    const cert = this.#bySha256.get(fingerprint) ?? [...this.#bySha256.values()].find((c) => c.sha1 === fingerprint);
    if (!cert) return false;
    this.#bySha256.delete(cert.sha256);
    pull(this.#bySubject, cert.subjectName.key, cert);
    if (cert.subjectKeyId) pull(this.#bySki, cert.subjectKeyId, cert);
    return true;
  }

  get size(): number {
    return this.#bySha256.size;
  }

  values(): IterableIterator<ParsedCertificate> {
    return this.#bySha256.values();
  }

  get(sha256: string): ParsedCertificate | undefined {
    return this.#bySha256.get(sha256);
  }

  bySubjectKeyId(ski: string): readonly ParsedCertificate[] {
    return this.#bySki.get(ski) ?? [];
  }

  issuersOf(cert: ParsedCertificate): readonly ParsedCertificate[] {
    return this.#bySubject.get(cert.issuerName.key) ?? [];
  }

  isAnchor(cert: ParsedCertificate): boolean {
    return this.#bySha256.has(cert.sha256);
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const arr = m.get(k);
  if (arr) arr.push(v);
  else m.set(k, [v]);
}

function pull<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const arr = m.get(k)?.filter((x) => x !== v);
  if (arr && arr.length) m.set(k, arr);
  else m.delete(k);
}

/**
 * Memo of verified (issuer, subject) signatures keyed by both SHA-256 fingerprints. The outcome
 * depends only on the two DER encodings, so sharing it between requests and tenants is safe.
 */
export class SignatureCache {
  /**
   * Bounded without evicting one entry at a time: deleting a Map's oldest key leaves a hole that
   * every later `keys().next()` walks past until the table is rebuilt, which at 20,000 entries
   * cost 17 µs per new leaf (measured), more than checking its signature.
   */
  readonly #results: GenerationalCache<string, boolean>;

  constructor(maxEntries = 20_000) {
    this.#results = new GenerationalCache(maxEntries);
  }

  has(issuer: ParsedCertificate, subject: ParsedCertificate): boolean {
    return this.#results.get(issuer.sha256 + subject.sha256) !== undefined;
  }

  verify(issuer: ParsedCertificate, subject: ParsedCertificate): boolean {
    const k = issuer.sha256 + subject.sha256;
    const hit = this.#results.get(k);
    if (hit !== undefined) return hit;
    const ok = signedBy(issuer, subject);
    this.#results.set(k, ok);
    return ok;
  }

  get size(): number {
    return this.#results.size;
  }

  clear(): void {
    this.#results.clear();
  }
}

export const defaultSignatureCache = new SignatureCache();

export interface ValidatePathOptions {
  leaf: ParsedCertificate;
  /** Certificates the device sent besides (or including) the leaf, in any order. */
  presented?: readonly ParsedCertificate[];
  anchors: readonly ParsedCertificate[] | AnchorSource;
  /** Check time; defaults to now. Compared at whole seconds, like the encoding (RFC 5280 4.1.2.5). */
  now?: Date;
  /** Most certificates in a path, leaf and anchor included; also the most a device may present. Default 10. */
  maxChainLength?: number;
  /** Most non-self-issued intermediates between leaf and anchor (x509-limbo's max_chain_depth). */
  maxIntermediates?: number;
  /** Extended key usage the leaf must allow when it lists any; null disables the check. Default clientAuth. */
  requiredEku?: string | null;
  /** Key usages the leaf must assert when it has a keyUsage extension. Default digitalSignature (TLS signs). */
  requiredKeyUsage?: readonly KeyUsage[];
  /** CRLs to apply; one whose issuer matches a CA in the path must verify and is then enforced. */
  crls?: readonly ParsedCrl[];
  /** Revocation lookup for each certificate under its issuer (the registry's serial holds). */
  isRevoked?: (cert: ParsedCertificate, issuer: ParsedCertificate) => boolean;
  /** Restricts which trust anchors may end a path (e.g. the anchors of one tenant). */
  acceptAnchor?: (anchor: ParsedCertificate) => boolean;
  /** When given, receives the steps of the decision, for the explain endpoint. */
  trace?: TraceStep[];
  signatureCache?: SignatureCache;
}

export type PathValidationResult =
  | { readonly ok: true; readonly path: readonly ParsedCertificate[]; readonly anchor: ParsedCertificate }
  | {
      readonly ok: false;
      readonly reason: DenyReason;
      readonly detail: string;
      /** The path that came closest, leaf first, when one reached an anchor. */
      readonly path?: readonly ParsedCertificate[];
    };

export const DEFAULT_MAX_CHAIN_LENGTH = 10;
/** Bounds on the search, for chains built to make path builders loop (x509-limbo pathological::*). */
const MAX_EXPANSIONS = 2_000;
/**
 * With `checkKeyStrength`'s bounds (RSA at most 8192 bits, exponent below 2^32; EC on named
 * curves), one check costs at most ~0.5 ms, so a decision spends at most ~50 ms on signatures
 * whatever the device presents; a weak key is never used for a check (`#linkVerifies`).
 */
const MAX_SIGNATURE_CHECKS = 100;

interface Failure {
  reason: DenyReason;
  detail: string;
  path?: ParsedCertificate[];
  steps: TraceStep[];
}

interface Candidate {
  cert: ParsedCertificate;
  anchor: boolean;
}

export function validatePath(options: ValidatePathOptions): PathValidationResult {
  const ctx = new Search(options);
  const result = ctx.run();
  if (options.trace) options.trace.push(...ctx.steps, ...(result.steps ?? []));
  if (result.ok) return { ok: true, path: result.path, anchor: result.path[result.path.length - 1] };
  return {
    ok: false,
    reason: result.reason,
    detail: result.detail,
    ...(result.path ? { path: result.path } : {}),
  };
}

type RunResult = ({ ok: true; path: ParsedCertificate[] } | ({ ok: false } & Failure)) & { steps?: TraceStep[] };

class Search {
  readonly steps: TraceStep[] = [];
  /** Whether the caller asked for a trace: the steps of a success are only written then. */
  readonly #tracing: boolean;
  readonly #o: ValidatePathOptions;
  readonly #anchors: AnchorSource;
  readonly #sigs: SignatureCache;
  readonly #maxLen: number;
  readonly #now: number;
  readonly #pool = new Map<string, ParsedCertificate>();
  readonly #poolBySubject = new Map<string, ParsedCertificate[]>();
  #reachable = new Set<string>();
  #expansions = 0;
  #signatureChecks = 0;
  #exhausted = false;
  /** First failure of a path that reached an anchor: the most informative one to report. */
  #completeFailure: Failure | null = null;
  #signatureFailure: Failure | null = null;
  #lengthFailure: Failure | null = null;
  #deepest: ParsedCertificate[] = [];

  constructor(o: ValidatePathOptions) {
    this.#o = o;
    this.#tracing = o.trace !== undefined;
    this.#anchors = Array.isArray(o.anchors) ? new TrustStore(o.anchors) : (o.anchors as AnchorSource);
    this.#sigs = o.signatureCache ?? defaultSignatureCache;
    this.#maxLen = o.maxChainLength ?? DEFAULT_MAX_CHAIN_LENGTH;
    // RFC 5280 4.1.2.5 validity is in whole seconds: compare the floor of the check time.
    this.#now = Math.floor((o.now ?? new Date()).getTime() / 1000) * 1000;
  }

  run(): RunResult {
    const leaf = this.#o.leaf;
    for (const c of this.#o.presented ?? []) if (c.sha256 !== leaf.sha256) this.#pool.set(c.sha256, c);
    const presentedCount = this.#pool.size + 1;
    if (this.#tracing) this.steps.push({ step: 'chain', ok: true, detail: `leaf "${show(leaf)}" with ${presentedCount - 1} other certificate(s) presented` });
    if (presentedCount > this.#maxLen) {
      return this.#fail('CHAIN_TOO_LONG', `${presentedCount} certificates presented; at most ${this.#maxLen} are accepted`);
    }
    for (const c of this.#pool.values()) if (!this.#anchors.isAnchor(c)) push(this.#poolBySubject, c.subjectName.key, c);
    this.#reachable = this.#reachableFromAnchors();

    if (this.#anchors.isAnchor(leaf) && this.#acceptable(leaf)) {
      const r = this.#checkPath([leaf]);
      if (r.ok) return r;
      this.#completeFailure ??= r;
    }
    const found = this.#extend([leaf]);
    if (found) return found;
    return this.#bestFailure();
  }

  #fail(reason: DenyReason, detail: string): RunResult {
    return { ok: false, reason, detail, steps: [{ step: stepFor(reason), ok: false, detail }] };
  }

  #bestFailure(): RunResult {
    const f = this.#completeFailure ?? this.#signatureFailure ?? this.#lengthFailure;
    if (f) return { ok: false, ...f };
    const top = this.#deepest[this.#deepest.length - 1] ?? this.#o.leaf;
    const detail = this.#exhausted
      ? 'path building gave up: too many candidate issuers'
      : `no trusted certificate issued "${top.issuer || '(empty issuer)'}"` +
        (top === this.#o.leaf ? '' : ` (path built up to "${show(top)}")`);
    return { ok: false, reason: 'NO_TRUSTED_ANCHOR', detail, steps: [{ step: 'anchor', ok: false, detail }] };
  }

  #acceptable(anchor: ParsedCertificate): boolean {
    return this.#o.acceptAnchor ? this.#o.acceptAnchor(anchor) : true;
  }

  /**
   * Presented certificates from which some anchor can be reached by issuer-name links: the
   * others cannot be on a valid path, so the search never enters them.
   */
  #reachableFromAnchors(): Set<string> {
    const reach = new Set<string>();
    const subjects = new Set<string>();
    for (let changed = true; changed; ) {
      changed = false;
      for (const c of this.#pool.values()) {
        if (reach.has(c.sha256)) continue;
        if (subjects.has(c.issuerName.key) || this.#anchors.issuersOf(c).some((a) => this.#acceptable(a))) {
          reach.add(c.sha256);
          subjects.add(c.subjectName.key);
          changed = true;
        }
      }
    }
    return reach;
  }

  /** Candidate issuers of `cert`: anchors first, then presented certificates still valid now, then the rest. */
  #candidates(cert: ParsedCertificate): Candidate[] {
    const anchors = this.#anchors
      .issuersOf(cert)
      .filter((a) => this.#acceptable(a) && keyIdMatches(cert, a))
      .map((a) => ({ cert: a, anchor: true }));
    const presented = (this.#poolBySubject.get(cert.issuerName.key) ?? [])
      .filter((c) => this.#reachable.has(c.sha256) && keyIdMatches(cert, c))
      .map((c) => ({ cert: c, anchor: false }));
    const now = this.#now;
    return [...anchors.sort((a, b) => expired(a, now) - expired(b, now)), ...presented.sort((a, b) => expired(a, now) - expired(b, now))];
  }

  #extend(path: ParsedCertificate[]): RunResult | null {
    const cur = path[path.length - 1];
    if (path.length > this.#deepest.length) this.#deepest = path;
    for (const cand of this.#candidates(cur)) {
      if (++this.#expansions > MAX_EXPANSIONS) this.#exhausted = true;
      if (this.#exhausted) return null;
      // Loops: the same certificate, or the same subject with the same key, never appears twice.
      if (path.some((p) => p.sha256 === cand.cert.sha256 || (p.subjectName.key === cand.cert.subjectName.key && bytesKey(p) === bytesKey(cand.cert)))) {
        continue;
      }
      const next = [...path, cand.cert];
      if (next.length > this.#maxLen) {
        this.#lengthFailure ??= {
          reason: 'CHAIN_TOO_LONG',
          detail: `a path through "${show(cand.cert)}" would exceed ${this.#maxLen} certificates`,
          steps: [{ step: 'chain-length', ok: false, detail: `path longer than ${this.#maxLen} certificates` }],
        };
        continue;
      }
      if (!this.#linkVerifies(cand.cert, cur)) {
        // A malformed certificate (e.g. outer and TBS signature algorithms differ) explains the
        // failed check better than the check itself.
        const malformed = cur.defects.find((d) => d.reason === 'MALFORMED_CERTIFICATE');
        this.#signatureFailure ??= {
          reason: malformed ? 'MALFORMED_CERTIFICATE' : 'SIGNATURE_INVALID',
          detail: malformed
            ? `"${show(cur)}": ${malformed.message}`
            : `signature of "${show(cur)}" does not verify with the key of "${show(cand.cert)}"`,
          path: next,
          steps: [{ step: 'signature', ok: false, detail: `"${show(cur)}" is not signed by "${show(cand.cert)}"` }],
        };
        continue;
      }
      if (cand.anchor) {
        const r = this.#checkPath(next);
        if (r.ok) return r;
        this.#completeFailure ??= r;
        continue;
      }
      const r = this.#extend(next);
      if (r) return r;
      if (this.#exhausted) return null;
    }
    return null;
  }

  /**
   * Whether `issuer` signed `subject`. When either the key or the algorithm is too weak the check
   * is deferred: the path can only end in WEAK_KEY / WEAK_SIGNATURE_ALGORITHM, which is the
   * more useful answer than a signature failure from an algorithm Node may not even support.
   */
  #linkVerifies(issuer: ParsedCertificate, subject: ParsedCertificate): boolean {
    if (checkKeyStrength(issuer.publicKey) || checkSignatureStrength(subject.signatureAlgorithm)) return true;
    if (!this.#sigs.has(issuer, subject)) {
      if (++this.#signatureChecks > MAX_SIGNATURE_CHECKS) {
        this.#exhausted = true;
        return false;
      }
    }
    return this.#sigs.verify(issuer, subject);
  }

  /** RFC 5280 6.1.2-6.1.5 over a built path (leaf first, anchor last). */
  #checkPath(path: ParsedCertificate[]): ({ ok: true; path: ParsedCertificate[] } | ({ ok: false } & Failure)) & { steps: TraceStep[] } {
    // Without a trace, `steps?.push(...)` skips building the step (its arguments are not evaluated).
    const steps: TraceStep[] | undefined = this.#tracing ? [] : undefined;
    const n = path.length;
    const anchor = path[n - 1];
    const leaf = path[0];
    steps?.push({ step: 'anchor', ok: true, detail: `trust anchor "${show(anchor)}" (fingerprint ${anchor.sha1})` });

    // 6.1.3 (a)(1): each link's signature, verified while building. A link whose issuer key or
    // signature algorithm is too weak was not relied on, and ends the path here.
    for (let i = 0; i < n - 1; i++) {
      const weakKey = checkKeyStrength(path[i + 1].publicKey);
      if (weakKey) return failedPath(path, steps, 'WEAK_KEY', 'signature', `${roleOf(i + 1, n)} "${show(path[i + 1])}": ${weakKey.message}`);
      const weakSig = checkSignatureStrength(path[i].signatureAlgorithm);
      if (weakSig) return failedPath(path, steps, 'WEAK_SIGNATURE_ALGORITHM', 'signature', `${roleOf(i, n)} "${show(path[i])}": ${weakSig.message}`);
      steps?.push({ step: 'signature', ok: true, detail: `"${show(path[i])}" is signed by "${show(path[i + 1])}" (${path[i].algorithmName})` });
    }
    const weakLeafKey = checkKeyStrength(leaf.publicKey);
    if (weakLeafKey) return failedPath(path, steps, 'WEAK_KEY', 'algorithms', `certificate "${show(leaf)}": ${weakLeafKey.message}`);
    steps?.push({ step: 'algorithms', ok: true, detail: 'keys and signature algorithms are strong enough' });

    // 6.1.3 (a)(2): every certificate, anchor included, valid at the check time.
    for (let i = 0; i < n; i++) {
      const c = path[i];
      if (this.#now < c.notBefore.getTime()) {
        return failedPath(path, steps, 'CERTIFICATE_NOT_YET_VALID', 'validity', `${roleOf(i, n)} "${show(c)}" is not valid before ${c.notBefore.toISOString()}`);
      }
      if (this.#now > c.notAfter.getTime()) {
        return failedPath(path, steps, i === 0 ? 'CERTIFICATE_EXPIRED' : 'ISSUER_EXPIRED', 'validity', `${roleOf(i, n)} "${show(c)}" expired on ${c.notAfter.toISOString()}`);
      }
    }
    steps?.push({ step: 'validity', ok: true, detail: `all ${n} certificate(s) valid at ${new Date(this.#now).toISOString()}` });

    // 6.1.4 (k): every issuer is a v3 CA; (n): keyCertSign when keyUsage is present.
    for (let i = 1; i < n; i++) {
      const c = path[i];
      if (c.version !== 3) return failedPath(path, steps, 'NOT_A_CA', 'basic-constraints', `${roleOf(i, n)} "${show(c)}" is X.509 version ${c.version}; issuers must be version 3 CA certificates`);
      if (c.basicConstraints?.ca !== true) {
        return failedPath(path, steps, 'NOT_A_CA', 'basic-constraints', `${roleOf(i, n)} "${show(c)}" is not a CA (basicConstraints cA is not set) but issued "${show(path[i - 1])}"`);
      }
      if (c.keyUsage && !c.keyUsage.has('keyCertSign')) {
        return failedPath(path, steps, 'KEY_USAGE_INVALID', 'key-usage', `${roleOf(i, n)} "${show(c)}" keyUsage does not include keyCertSign`);
      }
    }
    if (n > 1) steps?.push({ step: 'basic-constraints', ok: true, detail: 'every issuer is a CA allowed to sign certificates' });

    // Profile defects: malformed or inconsistent extensions, unknown critical extensions (6.1.4 (o)).
    for (let i = 0; i < n; i++) {
      const d = path[i].defects.find((x) => !(x.anchorExempt && i === n - 1 && n > 1));
      if (d) return failedPath(path, steps, d.reason, d.reason === 'UNKNOWN_CRITICAL_EXTENSION' ? 'critical-extensions' : 'extensions', `${roleOf(i, n)} "${show(path[i])}": ${d.message}`);
    }
    // A self-signed anchor's authorityKeyIdentifier, when present, must identify the anchor itself.
    if (n > 1 && anchor.selfIssued && !authorityKeyIdMatches(anchor, anchor) && this.#sigs.verify(anchor, anchor)) {
      return failedPath(path, steps, 'MALFORMED_CERTIFICATE', 'extensions', `trust anchor "${show(anchor)}": its authorityKeyIdentifier does not identify its own key (RFC 5280 4.2.1.1)`);
    }
    steps?.push({ step: 'extensions', ok: true, detail: 'extensions well-formed and consistent; no unsupported critical extension' });

    // 6.1.4 (l)-(m): pathLenConstraint counts non-self-issued intermediates below each CA.
    let remaining = Infinity;
    let setBy: ParsedCertificate | null = null;
    let intermediates = 0;
    for (let i = n - 1; i >= 1; i--) {
      const c = path[i];
      if (i < n - 1 && !c.selfIssued) {
        if (remaining <= 0) {
          return failedPath(path, steps, 'PATH_LENGTH_EXCEEDED', 'path-length', `"${show(setBy!)}" allows ${setBy!.basicConstraints!.pathLen} intermediate CA(s) below it, but "${show(c)}" exceeds that`);
        }
        remaining--;
        intermediates++;
      }
      const pl = c.basicConstraints?.pathLen;
      if (pl !== undefined && pl < remaining) {
        remaining = pl;
        setBy = c;
      }
    }
    if (this.#o.maxIntermediates !== undefined && intermediates > this.#o.maxIntermediates) {
      return failedPath(path, steps, 'CHAIN_TOO_LONG', 'path-length', `${intermediates} intermediate CA(s); at most ${this.#o.maxIntermediates} allowed`);
    }
    steps?.push({ step: 'path-length', ok: true, detail: `${intermediates} intermediate CA(s), within every pathLenConstraint` });

    // 6.1.4 (g) / 6.1.3 (b)-(c): constraints of each CA apply to every certificate below it,
    // except self-issued intermediates.
    const budget: ComparisonBudget = { remaining: MAX_CONSTRAINT_COMPARISONS };
    let constrained = false;
    for (let i = n - 1; i >= 1; i--) {
      const nc = path[i].nameConstraints;
      if (!nc) continue;
      constrained = true;
      for (let j = i - 1; j >= 0; j--) {
        if (j > 0 && path[j].selfIssued) continue;
        const problem = checkNameConstraints(nc, path[j], budget);
        if (problem) return failedPath(path, steps, 'NAME_CONSTRAINTS_VIOLATED', 'name-constraints', `${roleOf(j, n)} "${show(path[j])}" violates name constraints of "${show(path[i])}": ${problem}`);
      }
    }
    if (constrained) steps?.push({ step: 'name-constraints', ok: true, detail: 'all names within the constraints of their issuers' });

    // Leaf key usage: a TLS client signs the handshake, so digitalSignature by default.
    const requiredKu = this.#o.requiredKeyUsage ?? ['digitalSignature'];
    if (leaf.keyUsage) {
      const missing = requiredKu.filter((k) => !leaf.keyUsage!.has(k));
      if (missing.length) return failedPath(path, steps, 'KEY_USAGE_INVALID', 'key-usage', `certificate "${show(leaf)}" keyUsage lacks ${missing.join(', ')}`);
    }
    steps?.push({ step: 'key-usage', ok: true, detail: leaf.keyUsage ? `leaf keyUsage: ${[...leaf.keyUsage].join(', ')}` : 'leaf has no keyUsage restriction' });

    // 4.2.1.12: a leaf listing purposes must list the required one (or anyExtendedKeyUsage); CAs
    // listing purposes constrain what they issue, as OpenSSL, Go and Windows enforce.
    const eku = this.#o.requiredEku === undefined ? OID.clientAuth : this.#o.requiredEku;
    if (leaf.extKeyUsage && leaf.extensions.some((e) => e.oid === OID.extKeyUsage && e.critical)) {
      // CA/B BR 7.1.2.7.6 and webpki refuse a critical extendedKeyUsage in a subscriber
      // certificate; certgate follows them (RFC 5280 4.2.1.12 would allow it).
      return failedPath(path, steps, 'EXTENDED_KEY_USAGE_INVALID', 'extended-key-usage', `certificate "${show(leaf)}" marks extendedKeyUsage critical, which is not accepted for device certificates`);
    }
    if (eku !== null) {
      for (let i = 0; i < n; i++) {
        const list = path[i].extKeyUsage;
        if (list && !list.includes(eku) && !list.includes(OID.anyExtendedKeyUsage)) {
          return failedPath(path, steps, 'EXTENDED_KEY_USAGE_INVALID', 'extended-key-usage', `${roleOf(i, n)} "${show(path[i])}" extendedKeyUsage (${list.map(ekuName).join(', ')}) does not allow ${ekuName(eku)}`);
        }
      }
      steps?.push({ step: 'extended-key-usage', ok: true, detail: `${ekuName(eku)} allowed along the path` });
    }

    // 6.1.3 (a)(3): revocation of every certificate under its issuer.
    for (let i = 0; i < n - 1; i++) {
      const problem = this.#revocation(path[i], path[i + 1]);
      if (problem) return failedPath(path, steps, problem.reason, 'revocation', problem.detail);
    }
    if (this.#o.crls?.length || this.#o.isRevoked) steps?.push({ step: 'revocation', ok: true, detail: 'no certificate in the path is revoked' });

    return { ok: true, path, steps: steps ?? [] };
  }

  #revocation(cert: ParsedCertificate, issuer: ParsedCertificate): { reason: DenyReason; detail: string } | null {
    const serial = normalizeSerialHex(cert.serialNumberHex);
    for (const crl of this.#o.crls ?? []) {
      if (crl.issuerName.key !== issuer.subjectName.key) continue;
      if (crl.authorityKeyId && issuer.subjectKeyId && crl.authorityKeyId !== issuer.subjectKeyId) continue;
      const check = crlCheck(crl, issuer);
      if (!check.ok) return { reason: check.reason, detail: `revocation of "${show(cert)}" cannot be established: ${check.message}` };
      if (revokedSet(crl).has(serial)) {
        return { reason: 'CERTIFICATE_REVOKED', detail: `"${show(cert)}" (serial ${serial}) is revoked by the CRL of "${show(issuer)}"` };
      }
    }
    if (this.#o.isRevoked?.(cert, issuer)) {
      return { reason: 'CERTIFICATE_REVOKED', detail: `"${show(cert)}" (serial ${serial}) is revoked` };
    }
    return null;
  }
}

const crlChecks = new WeakMap<ParsedCrl, Map<string, CrlCheck>>();
const revokedSets = new WeakMap<ParsedCrl, Set<string>>();

function crlCheck(crl: ParsedCrl, issuer: ParsedCertificate): CrlCheck {
  let m = crlChecks.get(crl);
  if (!m) crlChecks.set(crl, (m = new Map()));
  let r = m.get(issuer.sha256);
  if (!r) m.set(issuer.sha256, (r = verifyCrlSignature(crl, issuer)));
  return r;
}

function revokedSet(crl: ParsedCrl): Set<string> {
  let s = revokedSets.get(crl);
  if (!s) revokedSets.set(crl, (s = new Set(crl.revoked.map((r) => r.serialHex))));
  return s;
}

/** RFC 5280 4.2.1.1: when both identifiers are present they must agree (as OpenSSL requires). */
function keyIdMatches(child: ParsedCertificate, issuer: ParsedCertificate): boolean {
  const keyId = child.authorityKeyId?.keyId;
  return keyId === undefined || issuer.subjectKeyId === undefined || keyId === issuer.subjectKeyId;
}

/** Full authorityKeyIdentifier agreement, used for a self-signed anchor against itself. */
function authorityKeyIdMatches(child: ParsedCertificate, issuer: ParsedCertificate): boolean {
  const aki = child.authorityKeyId;
  if (!aki) return true;
  if (!keyIdMatches(child, issuer)) return false;
  if (aki.serialHex !== undefined && aki.serialHex !== issuer.serialNumberHex) return false;
  const dirs = (aki.issuer ?? []).flatMap((g) => (g.type === 'dirName' ? [g.name.key] : []));
  return dirs.length === 0 || dirs.includes(issuer.issuerName.key);
}

const spkiKeys = new WeakMap<ParsedCertificate, string>();

function bytesKey(c: ParsedCertificate): string {
  let k = spkiKeys.get(c);
  if (k === undefined) spkiKeys.set(c, (k = Buffer.from(c.spki).toString('base64')));
  return k;
}

function failedPath(path: ParsedCertificate[], steps: TraceStep[] | undefined, reason: DenyReason, step: string, detail: string) {
  steps?.push({ step, ok: false, detail });
  return { ok: false as const, reason, detail, path, steps: steps ?? [] };
}

/** 0 for a candidate valid at `now`, else 1: valid issuers are tried first. */
function expired(c: Candidate, now: number): number {
  return c.cert.notBefore.getTime() <= now && now <= c.cert.notAfter.getTime() ? 0 : 1;
}

function roleOf(i: number, n: number): string {
  return i === 0 ? 'certificate' : i === n - 1 ? 'trust anchor' : 'intermediate';
}

function show(c: ParsedCertificate): string {
  return c.subject || '(empty subject)';
}

function stepFor(reason: DenyReason): string {
  return reason === 'CHAIN_TOO_LONG' ? 'chain-length' : 'chain';
}
