/**
 * The verifier's decision: a presented chain resolved to one tenant and one device, in order:
 * parse -> listed credential -> path to an anchor (per tenant) -> revocation -> tenant choice ->
 * tenant status -> profile and identity -> client id policy -> device (found or registered) ->
 * pinning -> device status -> allow. Each step answers `{ok: false, reason}` to stop; a store
 * that cannot be read is the only thing thrown (the caller answers "unavailable").
 */
import type { ParsedCertificate } from '../pki/certificate.js';
import type { TraceStep } from '../pki/path-validation.js';
import { allowDecision } from './allow-decision.js';
import {
  CACHE_TTL_SECONDS,
  clientIdPolicy,
  denied,
  deviceActive,
  expandAcl,
  identity,
  listedCredential,
  note,
  parseChain,
  pinning,
  selfSignedValidity,
  tenantActive,
  type Denied,
} from './decision-steps.js';
import { createDeviceRegistration } from './device-registration.js';
import { createTrustPaths, type Chain } from './trust-paths.js';
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
  /** Keep the parsed leaf for the next request of this chain (see TrustCache.parse). */
  keepLeaf?: boolean;
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
  cache: Pick<
    TrustCache,
    'parse' | 'credential' | 'apply' | 'deviceById' | 'deviceByName' | 'pinnedCredentialIds' | 'tenantStatus' | 'profile' | 'trustedBySubjectHash' | 'revocations'
  >;
  repository: Pick<VerifierRepository, 'credential' | 'registerDevice' | 'registrationQuotaReached'>;
  clock: () => Date;
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

export function createDecision({ cache, repository, clock }: DecisionDeps) {
  const paths = createTrustPaths(cache);
  const registration = createDeviceRegistration({ cache, repository });

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
    const selfPinned = leaf.selfIssued && credential.source === 'API' && presented.length === 0 && (await paths.candidateAnchors([leaf], tenantId)).length === 0;
    let anchor: TrustedEntry | undefined;
    if (selfPinned) {
      const valid = selfSignedValidity(leaf, now, tenantId, trace);
      if (!valid.ok) return fail(valid);
    } else {
      const path = await paths.pathForCredential(chain, tenantId, now, trace);
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
    const found = await paths.anchorTenant(req, chain, now, opts);
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
    const registered = await registration.deviceFor(tenantId, name, known, anchorProfile, anchor, now, opts);
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
      rules: profile ? expandAcl(profile, device) : [],
      leafNotAfter: leaf.notAfter,
      cacheTtlSeconds: CACHE_TTL_SECONDS,
    });
    return { ok: true, decision, wouldRegister };
  }

  /** The decision for a request; throws only when the store cannot be read. */
  async function decide(req: AuthenticateRequest, opts: DecideOptions = {}): Promise<Resolution> {
    const now = clock();
    const parsed = parseChain(req.certificateChain, (c) => cache.parse(c, opts.keepLeaf === true), opts.trace);
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
