/**
 * The verifier's decision: a presented chain resolved to one tenant and one device, in order:
 * parse -> listed credential -> path to an anchor (per tenant) -> revocation -> tenant choice ->
 * tenant status -> profile and identity -> client id policy -> device (found or registered) ->
 * pinning -> device status -> allow. Each step answers `{ok: false, reason}` to stop; a store
 * that cannot be read is the only thing thrown (the caller answers "unavailable").
 */
import { LRUCache } from 'lru-cache';
import type { ChangePublisher } from '../db/change-feed.js';
import type { ParsedCertificate } from '../pki/certificate.js';
import { nameHash } from '../pki/name-hash.js';
import { prefetchSignatures, validatePath, type TraceStep } from '../pki/path-validation.js';
import { allowDecision } from './allow-decision.js';
import {
  CACHE_TTL_SECONDS,
  clientIdPolicy,
  denied,
  deviceActive,
  expandAcl,
  identity,
  listedCredential,
  MAX_CHAIN_LENGTH,
  note,
  parseChain,
  pinning,
  revocation,
  selfSignedValidity,
  tenantActive,
  type Denied,
  type Result,
} from './decision-steps.js';
import { chooseTenant } from './tenant-choice.js';
import type { TrustCache, TrustedEntry } from './trust-cache.js';
import type { CredentialRef, DeviceRef, ProfileRef, VerifierRepository } from './verifier-repository.js';
import type { AllowDecision, AuthenticateRequest, Decision } from './verifier-types.js';

export interface DecideOptions {
  /** Decide for this tenant only (the explain endpoint). */
  tenantId?: string;
  /** No side effects: nothing registered, recorded or logged as an auth event. */
  dryRun?: boolean;
  trace?: TraceStep[];
  /** Skip the client id policy (the explain endpoint without a client id). */
  ignoreClientId?: boolean;
  /** The chain came before: keep its parsed leaf for the next time (see TrustCache.parse). */
  repeated?: boolean;
}

export interface Resolution {
  decision: Decision;
  tenantId?: string;
  leaf?: ParsedCertificate;
  /** The device the chain names, as far as resolution got: denials are filed under it too. */
  device?: { id?: string; name: string };
  /** For a dry run: the device would be created by auto-registration. */
  wouldRegister?: boolean;
}

export interface DecisionDeps {
  cache: TrustCache;
  repository: Pick<VerifierRepository, 'credential' | 'registerDevice' | 'registrationQuotaReached'>;
  publisher: ChangePublisher;
  clock: () => Date;
}

interface Chain {
  leaf: ParsedCertificate;
  presented: ParsedCertificate[];
}

/** A tenant whose enabled trusted certificate ends a valid, unrevoked path for the chain. */
interface Claim {
  tenantId: string;
  anchor: TrustedEntry;
  path: readonly ParsedCertificate[];
}

/** How far a decision got: a denial is filed under the device it reached. */
type Outcome = ({ ok: true; decision: AllowDecision; wouldRegister: boolean } | Denied) & { device?: { id?: string; name: string } };

/** What an allow names; for a dry run the device is the one auto-registration would create (no id yet). */
interface Allowed {
  tenantId: string;
  leaf: ParsedCertificate;
  device: Pick<DeviceRef, 'id' | 'name' | 'createdBy'>;
  matchedBy: AllowDecision['matchedBy'];
  anchor?: TrustedEntry;
  profile?: ProfileRef;
}

export function createDecision({ cache, repository, publisher, clock }: DecisionDeps) {
  const registrations = new Map<string, ReturnType<VerifierRepository['registerDevice']>>();

  // Issuer name -> lookup hash: every leaf of a CA names the same issuer, so this stays small.
  const issuerHashes = new LRUCache<string, string>({ max: 10_000 });
  function issuerHash(cert: ParsedCertificate): string {
    let h = issuerHashes.get(cert.issuerName.key);
    if (h === undefined) issuerHashes.set(cert.issuerName.key, (h = nameHash(cert.issuerName)));
    return h;
  }

  /** Trusted certificates (any status) named as issuer by a certificate of the chain. */
  async function candidateAnchors(certs: ParsedCertificate[], tenantScope?: string): Promise<TrustedEntry[]> {
    const found = new Map<string, TrustedEntry>();
    for (const h of new Set(certs.map(issuerHash))) {
      for (const t of await cache.trustedBySubjectHash(h)) {
        if (!tenantScope || t.tenantId === tenantScope) found.set(t.id, t);
      }
    }
    return [...found.values()];
  }

  /**
   * Path to an anchor of one tenant (RFC 5280 6.1 at `now`), then revocation in that tenant. A
   * chain that only a disabled trusted certificate would anchor says so.
   */
  async function pathInTenant(chain: Chain, tenantId: string, anchors: TrustedEntry[], now: Date, trace?: TraceStep[]): Promise<Result<Claim>> {
    const validate = (among: TrustedEntry[], t?: TraceStep[]) =>
      validatePath({ leaf: chain.leaf, presented: chain.presented, anchors: among.map((a) => a.cert), now, maxChainLength: MAX_CHAIN_LENGTH, trace: t });
    const enabled = anchors.filter((a) => a.status === 'ENABLED');
    const result = validate(enabled, trace);
    if (!result.ok) {
      const disabled = anchors.filter((a) => a.status === 'DISABLED');
      if (disabled.length && validate(disabled).ok) {
        note(trace, 'anchor', false, 'the trusted certificate of this chain is disabled');
        return denied('TRUSTED_CERTIFICATE_DISABLED', 'the trusted certificate of this chain is disabled', tenantId);
      }
      // Filed under no tenant: with several candidate tenants the chain belongs to none of them.
      return denied(result.reason, result.detail);
    }
    const anchor = enabled.find((a) => a.cert.sha256 === result.anchor.sha256)!;
    const revoked = revocation(result.path, await cache.revocations(tenantId), tenantId, trace);
    return revoked.ok ? { ok: true, tenantId, anchor, path: result.path } : revoked;
  }

  /** Every tenant among the candidates' that the chain reaches, and the most telling failure when none does. */
  async function claimsOf(chain: Chain, candidates: TrustedEntry[], now: Date, trace?: TraceStep[]): Promise<{ claims: Claim[]; failure?: Denied }> {
    const byTenant = new Map<string, TrustedEntry[]>();
    for (const c of candidates) byTenant.set(c.tenantId, [...(byTenant.get(c.tenantId) ?? []), c]);
    const single = byTenant.size === 1;
    const claims: Claim[] = [];
    let failure: Denied | undefined;
    for (const [tenantId, anchors] of byTenant) {
      const r = await pathInTenant(chain, tenantId, anchors, now, single ? trace : undefined);
      if (r.ok) claims.push(r);
      // The first failure, but "no anchor" gives way to any other reason.
      else if (!failure || failure.reason === 'NO_TRUSTED_ANCHOR') failure = single ? { ...r, tenantId } : r;
    }
    return { claims, failure };
  }

  /** (2) A path to an anchor and (3) its tenant: the one trusting it, or the one chosen among several. */
  async function anchorTenant(req: AuthenticateRequest, chain: Chain, now: Date, opts: DecideOptions): Promise<Result<Claim>> {
    const trace = opts.trace;
    const candidates = await candidateAnchors([chain.leaf, ...chain.presented], opts.tenantId);
    if (candidates.length === 0) {
      note(trace, 'anchor', false, 'no trusted certificate issued any certificate of the chain');
      return denied('NO_TRUSTED_ANCHOR', 'no trusted certificate matches the chain', opts.tenantId);
    }
    if (trace) note(trace, 'anchor', true, `candidate trusted certificates: ${candidates.map((c) => `${c.tenantId}/${c.fingerprint}`).join(', ')}`);
    await prefetchSignatures(chain.leaf, [...chain.presented, ...candidates.map((c) => c.cert)]);

    const { claims, failure } = await claimsOf(chain, candidates, now, trace);
    if (claims.length === 0) {
      note(trace, 'path', false, failure!.message);
      return failure!;
    }
    const choice = chooseTenant(claims, req);
    if (!choice.ok) {
      note(trace, 'tenant choice', false, `several tenants proved possession of this chain's CA key: ${choice.provers.join(', ')}`);
      return denied(choice.reason, choice.message);
    }
    if (opts.tenantId && trace) await explainSharing(choice.claim, chain, now, trace);
    return { ...choice.claim, ok: true };
  }

  /**
   * For the explanation of one tenant's decision: where a connection with no tenant hint goes
   * when other tenants trust the chain too (counted, never named).
   */
  async function explainSharing(own: Claim, chain: Chain, now: Date, trace: TraceStep[]): Promise<void> {
    const others = (await candidateAnchors([chain.leaf, ...chain.presented])).filter((c) => c.tenantId !== own.tenantId);
    const { claims } = others.length ? await claimsOf(chain, others, now) : { claims: [] };
    if (claims.length === 0) {
      note(trace, 'tenant choice', true, `only tenant ${own.tenantId} trusts this chain`);
      return;
    }
    const choice = chooseTenant([own, ...claims], {});
    const also = `${claims.length} other tenant(s) trust this chain too`;
    const hint = `as username or in SNI (${own.tenantId}.<host>)`;
    if (!choice.ok) {
      note(trace, 'tenant choice', false, `${also}; several proved possession of the CA key, so a connection must name tenant ${own.tenantId} ${hint}, else it is denied AMBIGUOUS_TENANT`);
    } else if (choice.claim === own) {
      const why = choice.why === 'possession' ? 'it alone proved possession of the CA key' : 'no tenant proved possession of the CA key and it trusted the certificate first';
      note(trace, 'tenant choice', true, `${also}; a connection with no tenant hint goes to tenant ${own.tenantId}: ${why}`);
    } else {
      const why = choice.why === 'possession' ? 'it alone proved possession of the CA key' : 'it trusted the certificate first and no tenant proved possession of the CA key';
      note(trace, 'tenant choice', false, `${also}; a connection with no tenant hint goes to another tenant (${why}): devices of tenant ${own.tenantId} must name it ${hint}`);
    }
  }

  /**
   * (5) The device: the one of that name, else auto-registered when the anchor allows it (a dry
   * run only says it would be).
   */
  async function deviceFor(
    tenantId: string,
    name: string,
    known: DeviceRef | null,
    profile: ProfileRef,
    anchor: TrustedEntry,
    now: Date,
    opts: DecideOptions,
  ): Promise<Result<{ device?: DeviceRef; wouldRegister: boolean }>> {
    const trace = opts.trace;
    if (known) return { ok: true, device: known, wouldRegister: false };
    if (!anchor.autoRegistrationEnabled) {
      note(trace, 'device', false, `device ${name} does not exist and auto-registration is off`);
      return denied('DEVICE_NOT_FOUND', `device ${name} is not registered`, tenantId);
    }
    const quotaUsed = () => {
      note(trace, 'device', false, `profile quota of ${profile.maxNewDevicesPerHour} new devices per hour reached`);
      return denied('REGISTRATION_QUOTA_EXCEEDED', 'the hourly auto-registration quota is used up', tenantId);
    };
    if (opts.dryRun) {
      if (await repository.registrationQuotaReached(tenantId, profile, now)) return quotaUsed();
      note(trace, 'device', true, `device ${name} would be registered automatically`);
      return { ok: true, wouldRegister: true };
    }
    // One registration per device name in this process; the database lock covers other processes.
    const key = `${tenantId}\u0000${name}`;
    let pending = registrations.get(key);
    if (!pending) {
      pending = repository.registerDevice(tenantId, name, profile, now);
      registrations.set(key, pending);
      void pending.finally(() => registrations.delete(key)).catch(() => {});
    }
    const result = await pending;
    if (result === 'GONE') {
      // The tenant or the profile was deleted by another process whose notification has not
      // arrived: what this process knows of the tenant is dropped, and the connection refused
      // on what the store holds now (the device's next attempt is decided afresh).
      cache.apply({ type: 'invalidate', tenantId, what: 'tenant' });
      if ((await cache.tenantStatus(tenantId)) === null) return denied('NO_TRUSTED_ANCHOR', 'the trusted certificate of this chain was deleted with its tenant');
      note(trace, 'device', false, `device ${name} cannot be registered: its device profile was deleted`);
      return denied('DEVICE_NOT_FOUND', `device ${name} is not registered: its device profile was deleted`, tenantId);
    }
    if (result === 'QUOTA_EXCEEDED') return quotaUsed();
    // Not put in the cache: a change to the device committed since it was read could reach this
    // process before it is put there, and be undone. The device's next connection looks it up.
    const { device, created } = result;
    if (created) {
      note(trace, 'device', true, `device ${name} registered automatically`);
      await publisher.publish([{ type: 'invalidate', tenantId, what: 'devices', devices: [{ id: device.id, name: device.name }] }]);
    }
    return { ok: true, device, wouldRegister: false };
  }

  /** (1) A certificate listed for a device names the device; its CA's path, status and revocation still apply. */
  async function byCredential(req: AuthenticateRequest, chain: Chain, credential: CredentialRef, now: Date, opts: DecideOptions): Promise<Outcome> {
    const { leaf, presented } = chain;
    const { tenantId } = credential;
    const trace = opts.trace;
    const device = (await cache.deviceById(tenantId, credential.deviceId)) ?? undefined;
    const fail = (d: Denied): Outcome => ({ ...d, tenantId, device: device && { id: device.id, name: device.name } });

    const listed = listedCredential(credential, trace);
    if (!listed.ok) return fail(listed);
    // Only a self-signed certificate pinned through the API stands on its fingerprint alone.
    const selfPinned = leaf.selfIssued && credential.source === 'API' && presented.length === 0 && (await candidateAnchors([leaf], tenantId)).length === 0;
    let anchor: TrustedEntry | undefined;
    if (selfPinned) {
      const valid = selfSignedValidity(leaf, now, tenantId, trace);
      if (!valid.ok) return fail(valid);
    } else {
      const anchors = await candidateAnchors([leaf, ...presented], tenantId);
      await prefetchSignatures(leaf, [...presented, ...anchors.filter((a) => a.status === 'ENABLED').map((a) => a.cert)]);
      const path = await pathInTenant(chain, tenantId, anchors, now, trace);
      if (!path.ok) return fail(path);
      anchor = path.anchor;
    }
    const active = tenantActive(tenantId, await cache.tenantStatus(tenantId), trace);
    if (!active.ok) return fail(active);
    if (!device) {
      note(trace, 'device', false, 'the device of this certificate no longer exists');
      return fail(denied('DEVICE_NOT_FOUND', 'the device of this certificate no longer exists'));
    }
    const profile = await cache.profile(tenantId, device.deviceProfileId);
    const pinned = pinning(device, credential.source === 'API', tenantId, trace);
    if (!pinned.ok) return fail(pinned);
    const policy = clientIdPolicy(opts.ignoreClientId ? undefined : req.clientId, device.name, profile, tenantId, trace);
    if (!policy.ok) return fail(policy);
    const usable = deviceActive(device, tenantId, trace);
    if (!usable.ok) return fail(usable);
    return allow(opts, { tenantId, leaf, device, matchedBy: 'DEVICE_CREDENTIALS', anchor, profile }, false);
  }

  /** (2)-(5) A path to a trusted certificate, its tenant, the device name from the profile, the device. */
  async function byPath(req: AuthenticateRequest, chain: Chain, now: Date, opts: DecideOptions): Promise<Outcome> {
    const trace = opts.trace;
    const found = await anchorTenant(req, chain, now, opts);
    if (!found.ok) return found;
    const { tenantId, anchor } = found;
    const active = tenantActive(tenantId, await cache.tenantStatus(tenantId), trace);
    if (!active.ok) return active;
    // (4) The device name from the anchor's profile.
    const named = identity(chain.leaf, await cache.profile(tenantId, anchor.deviceProfileId), tenantId, trace);
    if (!named.ok) return named;
    const { name, profile: anchorProfile } = named;
    // A registered device answers to its own profile's client id rule; a device still to be
    // registered to the rule of the profile it will get (the anchor's). Checked before
    // registering, so a wrong client id never creates a device.
    const known = await cache.deviceByName(tenantId, name);
    const knownProfile = known ? await cache.profile(tenantId, known.deviceProfileId) : undefined;
    const policy = clientIdPolicy(opts.ignoreClientId ? undefined : req.clientId, name, knownProfile ?? anchorProfile, tenantId, trace);
    if (!policy.ok) return { ...policy, device: { name } };
    // (5) The device: found, or auto-registered.
    const registered = await deviceFor(tenantId, name, known, anchorProfile, anchor, now, opts);
    if (!registered.ok) return { ...registered, device: { name } };
    const { device, wouldRegister } = registered;
    if (!device) {
      const toRegister = { id: '', name, createdBy: 'AUTO_REGISTRATION' as const };
      return allow(opts, { tenantId, leaf: chain.leaf, device: toRegister, matchedBy: 'TRUSTED_CERTIFICATE', anchor, profile: anchorProfile }, wouldRegister);
    }
    const reached = { id: device.id, name: device.name };
    const profile = (await cache.profile(tenantId, device.deviceProfileId)) ?? anchorProfile;
    const listed = device.pinCredentials && (await cache.pinnedCredentialIds(device.id)).has(chain.leaf.sha256);
    const pinned = pinning(device, listed, tenantId, trace);
    if (!pinned.ok) return { ...pinned, device: reached };
    const usable = deviceActive(device, tenantId, trace);
    if (!usable.ok) return { ...usable, device: reached };
    return allow(opts, { tenantId, leaf: chain.leaf, device, matchedBy: 'TRUSTED_CERTIFICATE', anchor, profile }, false);
  }

  function allow(opts: DecideOptions, { tenantId, leaf, device, matchedBy, anchor, profile }: Allowed, wouldRegister: boolean): Outcome {
    note(opts.trace, 'decision', true, `allow ${device.name}${device.id ? '' : ' (to be registered)'} of tenant ${tenantId}`);
    const decision = allowDecision({
      tenantId,
      device: { id: device.id, name: device.name, autoRegistered: device.createdBy === 'AUTO_REGISTRATION' },
      matchedBy,
      trustedCertificateFingerprint: anchor?.fingerprint,
      allow: profile ? expandAcl(profile, device) : [],
      leafNotAfter: leaf.notAfter,
      cacheTtlSeconds: CACHE_TTL_SECONDS,
    });
    return { ok: true, decision, wouldRegister };
  }

  /** The decision for a request; throws only when the store cannot be read. */
  async function decide(req: AuthenticateRequest, opts: DecideOptions = {}): Promise<Resolution> {
    const now = clock();
    const parsed = parseChain(req.certificateChain, (c) => cache.parse(c, opts.repeated === true), opts.trace);
    if (!parsed.ok) return refusal(parsed, opts);
    const chain: Chain = parsed;
    const inScope = (c: CredentialRef | null) => (c && (!opts.tenantId || c.tenantId === opts.tenantId) ? c : null);
    const credential = await cache.credential(chain.leaf.sha256);
    let outcome = inScope(credential) ? await byCredential(req, chain, credential!, now, opts) : await byPath(req, chain, now, opts);
    if (!outcome.ok && credential === null) {
      // A credential added through another process reaches this one's caches by notification, a
      // moment after the API answered: a device provisioned and connecting at once would be
      // refused in between. So a refusal of a leaf the caches do not list is checked against the
      // database, and a credential found there decides.
      const late = inScope(await repository.credential(chain.leaf.sha256).catch(() => null));
      if (late) {
        cache.apply({ type: 'credentials-observed', tenantId: late.tenantId, credentialsIds: [late.credentialsId] });
        outcome = await byCredential(req, chain, late, now, opts);
      }
    }
    if (outcome.ok) return { decision: outcome.decision, tenantId: outcome.decision.tenantId, leaf: chain.leaf, wouldRegister: outcome.wouldRegister };
    return { ...refusal(outcome, opts), leaf: chain.leaf, device: outcome.device };
  }

  function refusal(d: Denied, opts: DecideOptions): Resolution {
    return { decision: { result: 'deny', reason: d.reason, message: d.message }, tenantId: d.tenantId ?? opts.tenantId };
  }

  return { decide };
}
