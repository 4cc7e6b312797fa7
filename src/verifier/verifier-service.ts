import crypto from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { ParsedCertificate } from '../pki/certificate.js';
import { nameHash } from '../pki/name-hash.js';
import { prefetchSignatures, validatePath, type TraceStep } from '../pki/path-validation.js';
import { extractIdentity } from '../pki/identity.js';
import { recordQueue, type RecordQueueOptions } from './records-queue.js';
import { credentialsObserved, type ChangePublisher } from '../db/change-feed.js';
import type { Metrics } from '../plugins/metrics.js';
import { isValidDeviceName } from '../modules/devices/devices-schemas.js';
import { SeenBefore } from './seen-before.js';
import { chooseTenant } from './tenant-choice.js';
import { allowDecision } from './allow-decision.js';
import { GenerationalCache } from '../lib/generational-cache.js';
import { revokedCredentialKey, type TrustCache, type TrustedEntry } from './trust-cache.js';
import {
  authEventEncoder,
  type AuthEventRow,
  type DeviceRef,
  type EncodedAuthEvent,
  type ObservedLeaf,
  type ProfileRef,
  type VerifierRepository,
} from './verifier-repository.js';
import {
  VerifierUnavailableError,
  type AclRule,
  type AuthenticateRequest,
  type Decision,
  type DenyDecision,
  type DenyReason,
  type Verifier,
} from './verifier-types.js';

export const MAX_CHAIN_LENGTH = 10;
const CACHE_TTL_SECONDS = 60;

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

/** What resolution learnt before it allowed or denied. */
interface ResolveContext {
  leaf?: ParsedCertificate;
  device?: { id?: string; name: string };
  /** The caches listed the leaf as a device credential. */
  listedCredential?: boolean;
}

export interface VerifierDeps {
  repository: VerifierRepository;
  cache: TrustCache;
  publisher: ChangePublisher;
  metrics?: Metrics;
  logger?: Logger;
  clock?: () => Date;
  /** How many records may wait for the database, and how long `close` waits for them. */
  records?: RecordQueueOptions;
}

/**
 * What a cached decision keeps of its leaf: enough to record the next sighting and to expire
 * with the certificate (a few hundred bytes, where the whole parse is ~6 KB of heap).
 */
type LeafFacts = Pick<ParsedCertificate, 'sha256' | 'der' | 'subject' | 'issuer' | 'serialNumberHex' | 'notBefore' | 'notAfter'>;
type Recorded = Omit<Resolution, 'leaf'> & {
  leaf?: LeafFacts;
  /** A decision kept in the cache encodes its auth events with this, made when it was kept. */
  encodeEvent?: (time: Date) => EncodedAuthEvent;
};

/**
 * The JSON of decisions kept in the decision cache, made once: a device reconnecting is answered
 * the same bytes for as long as its decision is kept (and no longer: the map holds it weakly).
 */
const keptBodies = new WeakMap<Decision, string>();

/** The decision as the HTTP route answers it. */
export function decisionJson(decision: Decision): string {
  return keptBodies.get(decision) ?? JSON.stringify(decision);
}

function leafFacts(c: ParsedCertificate): LeafFacts {
  return {
    sha256: c.sha256,
    der: c.der,
    subject: c.subject,
    issuer: c.issuer,
    serialNumberHex: c.serialNumberHex,
    notBefore: c.notBefore,
    notAfter: c.notAfter,
  };
}

class Deny extends Error {
  constructor(readonly reason: DenyReason, message: string, readonly tenantId?: string) {
    super(message);
  }
}

/** What was cached no longer exists in the store (deleted by another process a moment ago). */
class StaleCache extends Error {}

const deny = (reason: DenyReason, message: string, tenantId?: string): never => {
  throw new Deny(reason, message, tenantId);
};

function fillTopic(template: string, device: { id: string; name: string }): string {
  return template.replaceAll('{deviceName}', device.name).replaceAll('{deviceId}', device.id);
}

/** ACL templates of the profile with the device filled in. */
export function expandAcl(profile: Pick<ProfileRef, 'aclPublish' | 'aclSubscribe'>, device: { id: string; name: string }): AclRule[] {
  return [
    ...profile.aclPublish.map((t) => ({ permission: 'allow' as const, action: 'publish' as const, topic: fillTopic(t, device) })),
    ...profile.aclSubscribe.map((t) => ({ permission: 'allow' as const, action: 'subscribe' as const, topic: fillTopic(t, device) })),
  ];
}

/** Cumulocity's rule: the client id equals the device name; a leading `d:` is ignored. */
function clientIdMatches(clientId: string, deviceName: string): boolean {
  return (clientId.startsWith('d:') ? clientId.slice(2) : clientId) === deviceName;
}

/**
 * Resolves a presented chain to one tenant and one device, in the contract's
 * order: pinned/known credential, path to a trusted anchor, tenant, identity, device.
 */
export function createVerifier(deps: VerifierDeps) {
  const { repository, cache, publisher, metrics, logger } = deps;
  const clock = deps.clock ?? (() => new Date());
  // Decisions expire after CACHE_TTL_SECONDS; a cold request misses here, so the cache is cheap to miss.
  const decisions = new GenerationalCache<string, { generation: number; expires: number; resolution: Recorded }>(100_000);
  const seenBefore = new SeenBefore();
  // Bound once: a labelled child found again on every request costs a lookup each time.
  const cacheHits = metrics?.verifierCache.labels('hit');
  const cacheMisses = metrics?.verifierCache.labels('miss');
  const registrations = new Map<string, ReturnType<VerifierRepository['registerDevice']>>();

  // Auth events and sightings are kept until written, whatever the database does meanwhile
  // (records-queue.ts); the verifier's close waits for them, bounded.
  const authEvents = recordQueue<EncodedAuthEvent>('auth_event', (batch) => repository.insertAuthEvents(batch.items, batch.id), deps);
  // Recording an observed leaf changes no decision (the same device is found either way), so it
  // is written behind and voids no cached decision; credential indexes learn the new ids.
  const observed = recordQueue<ObservedLeaf>(
    'sighting',
    async ({ items: leaves }) => {
      const latest = new Map(leaves.map((l) => [l.credentialsId, l]));
      await repository.recordObserved([...latest.values()]);
      const fresh = new Map<string, string[]>();
      for (const l of latest.values()) {
        if (cache.knowsCredential(l.credentialsId)) continue;
        const ids = fresh.get(l.tenantId);
        if (ids) ids.push(l.credentialsId);
        else fresh.set(l.tenantId, [l.credentialsId]);
      }
      if (fresh.size) await publisher.publish([...fresh].flatMap(([tenantId, ids]) => credentialsObserved(tenantId, ids)));
    },
    deps,
  );

  function step(trace: TraceStep[] | undefined, name: string, ok: boolean, detail: string): void {
    trace?.push({ step: name, ok, detail });
  }

  async function checkRevocation(tenantId: string, path: readonly ParsedCertificate[], trace?: TraceStep[]): Promise<void> {
    const { bySerial, revokedCredentials } = await cache.revocations(tenantId);
    const leaf = path[0]!;
    if (revokedCredentials.has(revokedCredentialKey(leaf.issuer, leaf.serialNumberHex))) {
      step(trace, 'revocation', false, `certificate serial ${leaf.serialNumberHex} of ${leaf.issuer} is revoked for its device`);
      deny('CERTIFICATE_REVOKED', 'this certificate was revoked for its device', tenantId);
    }
    for (let i = 0; i < path.length - 1; i++) {
      const holds = bySerial.get(path[i]!.serialNumberHex);
      if (holds && (holds.has('') || holds.has(path[i + 1]!.sha1))) {
        step(trace, 'revocation', false, `serial ${path[i]!.serialNumberHex} of ${path[i]!.subject} is revoked`);
        deny('CERTIFICATE_REVOKED', `certificate serial ${path[i]!.serialNumberHex} is revoked`, tenantId);
      }
    }
    step(trace, 'revocation', true, 'no certificate of the path is revoked');
  }

  async function checkTenant(tenantId: string, trace?: TraceStep[]): Promise<void> {
    const status = await cache.tenantStatus(tenantId);
    if (status !== 'ACTIVE') {
      step(trace, 'tenant', false, `tenant ${tenantId} is ${status ?? 'gone'}`);
      deny('TENANT_SUSPENDED', `tenant ${tenantId} is suspended`, tenantId);
    }
    step(trace, 'tenant', true, `tenant ${tenantId} is active`);
  }

  /** Validates the chain against the given anchors of one tenant. */
  function validateFor(leaf: ParsedCertificate, presented: ParsedCertificate[], anchors: TrustedEntry[], now: Date, trace?: TraceStep[]) {
    return validatePath({
      leaf,
      presented,
      anchors: anchors.map((a) => a.cert),
      now,
      maxChainLength: MAX_CHAIN_LENGTH,
      trace,
    });
  }

  // Issuer name -> lookup hash: every leaf of a CA names the same issuer, so this stays small.
  const issuerHashes = new LRUCache<string, string>({ max: 10_000 });
  function issuerHash(cert: ParsedCertificate): string {
    let h = issuerHashes.get(cert.issuerName.key);
    if (h === undefined) issuerHashes.set(cert.issuerName.key, (h = nameHash(cert.issuerName)));
    return h;
  }

  async function candidateAnchors(chain: ParsedCertificate[], tenantScope?: string): Promise<TrustedEntry[]> {
    const hashes = new Set(chain.map(issuerHash));
    const found = new Map<string, TrustedEntry>();
    for (const h of hashes) {
      for (const t of await cache.trustedBySubjectHash(h)) {
        if (!tenantScope || t.tenantId === tenantScope) found.set(t.id, t);
      }
    }
    return [...found.values()];
  }

  type Claim = { tenantId: string; anchor: TrustedEntry; path: readonly ParsedCertificate[] };

  /**
   * The tenants among the candidates' whose enabled anchors end a valid, unrevoked path; and the
   * first failure, to report when none does.
   */
  async function tenantClaims(
    leaf: ParsedCertificate,
    presented: ParsedCertificate[],
    candidates: TrustedEntry[],
    now: Date,
    trace?: TraceStep[],
  ): Promise<{ claims: Claim[]; failure?: Deny }> {
    const byTenant = new Map<string, TrustedEntry[]>();
    for (const c of candidates) byTenant.set(c.tenantId, [...(byTenant.get(c.tenantId) ?? []), c]);

    const claims: Claim[] = [];
    let firstFailure: Deny | undefined;
    for (const [tenantId, anchors] of byTenant) {
      const enabled = anchors.filter((a) => a.status === 'ENABLED');
      const result = validateFor(leaf, presented, enabled, now, byTenant.size === 1 ? trace : undefined);
      if (result.ok) {
        const anchor = enabled.find((a) => a.cert.sha256 === result.path[result.path.length - 1]!.sha256)!;
        try {
          await checkRevocation(tenantId, result.path, byTenant.size === 1 ? trace : undefined);
          claims.push({ tenantId, anchor, path: result.path });
        } catch (err) {
          if (!(err instanceof Deny)) throw err;
          firstFailure ??= err;
        }
        continue;
      }
      const disabled = anchors.filter((a) => a.status === 'DISABLED');
      if (disabled.length && validateFor(leaf, presented, disabled, now).ok) {
        firstFailure ??= new Deny('TRUSTED_CERTIFICATE_DISABLED', 'the trusted certificate of this chain is disabled', tenantId);
        continue;
      }
      if (!firstFailure || firstFailure.reason === 'NO_TRUSTED_ANCHOR') {
        firstFailure = new Deny(result.reason, result.detail, byTenant.size === 1 ? tenantId : undefined);
      }
    }
    return { claims, failure: firstFailure };
  }

  /**
   * For the explanation of one tenant's decision: where a connection with no tenant hint would
   * go when other tenants trust the chain too (they are counted, never named).
   */
  async function explainSharing(own: Claim, leaf: ParsedCertificate, presented: ParsedCertificate[], now: Date, trace: TraceStep[]): Promise<void> {
    const others = (await candidateAnchors([leaf, ...presented])).filter((c) => c.tenantId !== own.tenantId);
    const { claims } = others.length ? await tenantClaims(leaf, presented, others, now) : { claims: [] };
    if (claims.length === 0) {
      step(trace, 'tenant choice', true, `only tenant ${own.tenantId} trusts this chain`);
      return;
    }
    const choice = chooseTenant([own, ...claims], {});
    const also = `${claims.length} other tenant(s) trust this chain too`;
    if (!choice.ok) {
      step(trace, 'tenant choice', false, `${also}; several proved possession of the CA key, so a connection must name tenant ${own.tenantId} as username or in SNI (${own.tenantId}.<host>), else it is denied AMBIGUOUS_TENANT`);
    } else if (choice.claim === own) {
      const why = choice.why === 'possession' ? 'it alone proved possession of the CA key' : 'no tenant proved possession of the CA key and it trusted the certificate first';
      step(trace, 'tenant choice', true, `${also}; a connection with no tenant hint goes to tenant ${own.tenantId}: ${why}`);
    } else {
      const why = choice.why === 'possession' ? 'it alone proved possession of the CA key' : 'it trusted the certificate first and no tenant proved possession of the CA key';
      step(trace, 'tenant choice', false, `${also}; a connection with no tenant hint goes to another tenant (${why}): devices of tenant ${own.tenantId} must name it as username or in SNI (${own.tenantId}.<host>)`);
    }
  }

  async function resolveByPath(
    req: AuthenticateRequest,
    leaf: ParsedCertificate,
    presented: ParsedCertificate[],
    now: Date,
    opts: DecideOptions,
  ): Promise<Claim> {
    const trace = opts.trace;
    const candidates = await candidateAnchors([leaf, ...presented], opts.tenantId);
    if (candidates.length === 0) {
      step(trace, 'anchor', false, 'no trusted certificate issued any certificate of the chain');
      deny('NO_TRUSTED_ANCHOR', 'no trusted certificate matches the chain', opts.tenantId);
    }
    if (trace) step(trace, 'anchor', true, `candidate trusted certificates: ${candidates.map((c) => `${c.tenantId}/${c.fingerprint}`).join(', ')}`);
    await prefetchSignatures(leaf, [...presented, ...candidates.map((c) => c.cert)]);

    const { claims, failure } = await tenantClaims(leaf, presented, candidates, now, trace);
    if (claims.length === 0) {
      step(trace, 'path', false, failure!.message);
      throw failure!;
    }
    // (3) The tenant: the one trusting the anchor, or the one chosen among several.
    const choice = chooseTenant(claims, req);
    if (!choice.ok) {
      step(trace, 'tenant choice', false, `several tenants proved possession of this chain's CA key: ${choice.provers.join(', ')}`);
      return deny(choice.reason, choice.message);
    }
    if (opts.tenantId && trace) await explainSharing(choice.claim, leaf, presented, now, trace);
    return choice.claim;
  }

  async function deviceFor(
    tenantId: string,
    name: string,
    profile: ProfileRef,
    anchor: TrustedEntry | undefined,
    now: Date,
    opts: DecideOptions,
  ): Promise<{ device: DeviceRef | undefined; wouldRegister: boolean }> {
    const existing = await cache.deviceByName(tenantId, name);
    if (existing) return { device: existing, wouldRegister: false };
    if (!anchor?.autoRegistrationEnabled) {
      step(opts.trace, 'device', false, `device ${name} does not exist and auto-registration is off`);
      deny('DEVICE_NOT_FOUND', `device ${name} is not registered`, tenantId);
    }
    if (opts.dryRun) {
      if (await repository.registrationQuotaReached(tenantId, profile, now)) {
        step(opts.trace, 'device', false, `device ${name} would exceed the profile's quota of ${profile.maxNewDevicesPerHour} new devices per hour`);
        deny('REGISTRATION_QUOTA_EXCEEDED', 'the hourly auto-registration quota is used up', tenantId);
      }
      step(opts.trace, 'device', true, `device ${name} would be registered automatically`);
      return { device: undefined, wouldRegister: true };
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
      // Deleted by another process before its notification reached us: decide again afresh.
      cache.apply({ type: 'invalidate', tenantId, what: 'tenant' });
      throw new StaleCache();
    }
    if (result === 'QUOTA_EXCEEDED') {
      step(opts.trace, 'device', false, `profile quota of ${profile.maxNewDevicesPerHour} new devices per hour reached`);
      deny('REGISTRATION_QUOTA_EXCEEDED', 'the hourly auto-registration quota is used up', tenantId);
    }
    // Not put in the cache: a change to the device committed since it was read could reach this
    // process before it is put there, and be undone. The device's next connection looks it up.
    const { device, created } = result as { device: DeviceRef; created: boolean };
    if (created) {
      step(opts.trace, 'device', true, `device ${name} registered automatically`);
      await publisher.publish([{ type: 'invalidate', tenantId, what: 'devices', devices: [{ id: device.id, name: device.name }] }]);
    }
    return { device, wouldRegister: false };
  }

  async function resolve(req: AuthenticateRequest, opts: DecideOptions, ctx: ResolveContext): Promise<Resolution> {
    const trace = opts.trace;
    const now = clock();
    if (req.certificateChain.length === 0) deny('MALFORMED_CERTIFICATE', 'no certificate was presented');
    if (req.certificateChain.length > MAX_CHAIN_LENGTH) {
      deny('CHAIN_TOO_LONG', `the chain has ${req.certificateChain.length} certificates; at most ${MAX_CHAIN_LENGTH} are accepted`);
    }
    let chain: ParsedCertificate[];
    try {
      chain = req.certificateChain.map((c) => cache.parse(c, opts.repeated === true));
    } catch (err) {
      step(trace, 'parse', false, (err as Error).message);
      return deny('MALFORMED_CERTIFICATE', `a certificate of the chain cannot be read: ${(err as Error).message}`);
    }
    const [leaf, ...presented] = chain as [ParsedCertificate, ...ParsedCertificate[]];
    ctx.leaf = leaf;
    if (trace) step(trace, 'parse', true, `leaf ${leaf.subject} (serial ${leaf.serialNumberHex}), ${presented.length} more certificate(s)`);

    let tenantId: string;
    let device: DeviceRef | undefined;
    let anchor: TrustedEntry | undefined;
    let matchedBy: 'DEVICE_CREDENTIALS' | 'TRUSTED_CERTIFICATE';
    let wouldRegister = false;
    let profile: ProfileRef | undefined;

    // (1) A certificate listed for a device names the device directly.
    const credential = await cache.credential(leaf.sha256);
    ctx.listedCredential = credential !== null;
    if (credential && (!opts.tenantId || credential.tenantId === opts.tenantId)) {
      tenantId = credential.tenantId;
      matchedBy = 'DEVICE_CREDENTIALS';
      device = (await cache.deviceById(tenantId, credential.deviceId)) ?? undefined;
      if (device) ctx.device = { id: device.id, name: device.name };
      if (credential.status === 'REVOKED') {
        step(trace, 'credentials', false, 'the certificate is revoked for its device');
        deny('CERTIFICATE_REVOKED', 'this certificate was revoked for its device', tenantId);
      }
      step(trace, 'credentials', true, `certificate listed for device ${credential.deviceId} (${credential.source})`);
      if (leaf.selfIssued && credential.source === 'API' && presented.length === 0 && (await candidateAnchors([leaf], tenantId)).length === 0) {
        // Only a self-signed certificate pinned through the API stands on its fingerprint alone.
        if (now < leaf.notBefore || now > leaf.notAfter) {
          const early = now < leaf.notBefore;
          step(trace, 'validity', false, `the certificate is valid from ${leaf.notBefore.toISOString()} to ${leaf.notAfter.toISOString()}`);
          deny(early ? 'CERTIFICATE_NOT_YET_VALID' : 'CERTIFICATE_EXPIRED', early ? 'the certificate is not valid yet' : 'the certificate has expired', tenantId);
        }
        step(trace, 'path', true, 'self-signed certificate pinned through the API');
      } else {
        const anchors = (await candidateAnchors(chain, tenantId)).filter((a) => a.status === 'ENABLED');
        await prefetchSignatures(leaf, [...presented, ...anchors.map((a) => a.cert)]);
        const result = validateFor(leaf, presented, anchors, now, trace);
        if (!result.ok) {
          const disabled = (await candidateAnchors(chain, tenantId)).filter((a) => a.status === 'DISABLED');
          if (disabled.length && validateFor(leaf, presented, disabled, now).ok) {
            step(trace, 'anchor', false, 'the trusted certificate of this chain is disabled');
            deny('TRUSTED_CERTIFICATE_DISABLED', 'the trusted certificate of this chain is disabled', tenantId);
          }
          deny(result.reason, result.detail, tenantId);
        } else {
          anchor = anchors.find((a) => a.cert.sha256 === result.path[result.path.length - 1]!.sha256);
          await checkRevocation(tenantId, result.path, trace);
        }
      }
      await checkTenant(tenantId, trace);
      if (!device) {
        step(trace, 'device', false, 'the device of this certificate no longer exists');
        deny('DEVICE_NOT_FOUND', 'the device of this certificate no longer exists', tenantId);
      }
      profile = await cache.profile(tenantId, device!.deviceProfileId);
      if (device!.pinCredentials && credential.source !== 'API') {
        step(trace, 'pinning', false, `device ${device!.name} accepts only its listed certificates`);
        deny('CREDENTIALS_NOT_PINNED', `device ${device!.name} accepts only its listed certificates`, tenantId);
      }
    } else {
      // (2) A path to a trusted certificate, (3) its tenant.
      const found = await resolveByPath(req, leaf, presented, now, opts);
      tenantId = found.tenantId;
      anchor = found.anchor;
      matchedBy = 'TRUSTED_CERTIFICATE';
      await checkTenant(tenantId, trace);
      // (4) The device name from the anchor's profile.
      profile = await cache.profile(tenantId, anchor.deviceProfileId);
      if (!profile) deny('IDENTITY_NOT_FOUND', 'the tenant has no device profile', tenantId);
      const name = extractIdentity(leaf, {
        source: profile!.identitySource,
        pattern: profile!.identityPattern,
        uriPrefix: profile!.identityUriPrefix ?? undefined,
      });
      if (name === null || !isValidDeviceName(name)) {
        step(trace, 'identity', false, `no device name in the ${profile!.identitySource} matches ${profile!.identityPattern}`);
        deny('IDENTITY_NOT_FOUND', `no device name could be taken from the certificate (${profile!.identitySource})`, tenantId);
      }
      step(trace, 'identity', true, `device name ${name}`);
      ctx.device = { name: name! };
      // A registered device answers to its own profile's client id rule; a device still to be
      // registered to the rule of the profile it will get (the anchor's). Checked before
      // registering, so a wrong client id never creates a device.
      const known = await cache.deviceByName(tenantId, name!);
      const policy = (known && (await cache.profile(tenantId, known.deviceProfileId))) || profile!;
      if (!opts.ignoreClientId && policy.clientIdPolicy === 'MUST_MATCH_DEVICE_NAME' && !clientIdMatches(req.clientId, name!)) {
        step(trace, 'client id', false, `client id ${req.clientId} is not ${name}`);
        deny('CLIENT_ID_MISMATCH', `client id must be the device name ${name}`, tenantId);
      }
      // (5) The device: checks, or auto-registration.
      const d = await deviceFor(tenantId, name!, profile!, anchor, now, opts);
      device = d.device;
      wouldRegister = d.wouldRegister;
      if (device) {
        ctx.device = { id: device.id, name: device.name };
        const devProfile = await cache.profile(tenantId, device.deviceProfileId);
        if (devProfile) profile = devProfile;
      }
      if (device?.pinCredentials) {
        const allowed = await cache.pinnedCredentialIds(device.id);
        if (!allowed.has(leaf.sha256)) {
          step(trace, 'pinning', false, `device ${device.name} accepts only its listed certificates`);
          deny('CREDENTIALS_NOT_PINNED', `device ${device.name} accepts only its listed certificates`, tenantId);
        }
      }
    }

    if (!opts.ignoreClientId && device && matchedBy === 'DEVICE_CREDENTIALS' && profile?.clientIdPolicy === 'MUST_MATCH_DEVICE_NAME' && !clientIdMatches(req.clientId, device.name)) {
      step(trace, 'client id', false, `client id ${req.clientId} is not ${device.name}`);
      deny('CLIENT_ID_MISMATCH', `client id must be the device name ${device.name}`, tenantId);
    }
    if (device && device.status !== 'ACTIVE') {
      step(trace, 'device', false, `device ${device.name} is disabled`);
      deny('DEVICE_DISABLED', `device ${device.name} is disabled`, tenantId);
    }
    // A dry run stops short of registering: the device is the one auto-registration would create.
    const d = device ?? { id: '', name: ctx.device?.name ?? '', createdBy: 'AUTO_REGISTRATION' as const };
    step(trace, 'decision', true, `allow ${d.name}${device ? '' : ' (to be registered)'} of tenant ${tenantId}`);
    return {
      tenantId,
      leaf,
      wouldRegister,
      decision: allowDecision({
        tenantId,
        device: { id: d.id, name: d.name, autoRegistered: d.createdBy === 'AUTO_REGISTRATION' },
        matchedBy,
        trustedCertificateFingerprint: anchor?.fingerprint,
        allow: profile ? expandAcl(profile, d) : [],
        leafNotAfter: leaf.notAfter,
        cacheTtlSeconds: CACHE_TTL_SECONDS,
      }),
    };
  }

  /** `retry`: this is the second pass, after the caches were found behind the store; there is no third. */
  async function decide(req: AuthenticateRequest, opts: DecideOptions = {}, retry = false): Promise<Resolution> {
    const ctx: ResolveContext = {};
    try {
      return await resolve(req, opts, ctx);
    } catch (err) {
      if (err instanceof StaleCache && !retry) return decide(req, opts, true);
      if (err instanceof Deny) {
        // A credential added through another process reaches this one's caches by notification, a
        // moment after the API answered: a device provisioned and connecting at once would be refused
        // in between. So a refusal of a leaf the caches do not list is confirmed in the database.
        if (!retry && ctx.leaf && ctx.listedCredential === false) {
          const listed = await repository.credential(ctx.leaf.sha256).catch(() => null);
          if (listed) {
            cache.apply({ type: 'credentials-observed', tenantId: listed.tenantId, credentialsIds: [listed.credentialsId] });
            return decide(req, opts, true);
          }
        }
        const decision: DenyDecision = { result: 'deny', reason: err.reason, message: err.message };
        return { decision, tenantId: err.tenantId ?? opts.tenantId, leaf: ctx.leaf, device: ctx.device };
      }
      // Callers only learn "unavailable" (and fail closed); the cause belongs in the log.
      logger?.warn({ err }, 'verifier cannot decide');
      throw new VerifierUnavailableError((err as Error)?.message ?? 'store unavailable');
    }
  }

  function cacheKey(req: AuthenticateRequest): string {
    // Length prefixes keep the fields apart whatever they contain; one-shot hash, no Hash object.
    let text = '';
    for (const c of req.certificateChain) text += `${c.length}:${c}`;
    for (const f of [req.clientId, req.username, req.sni, req.tenantId]) text += f === undefined ? '|-' : `|${f.length}:${f}`;
    return crypto.hash('sha256', text, 'base64');
  }

  /** The auth event of a decision, but for its time; none when the decision names no tenant. */
  function authEventOf(req: AuthenticateRequest, r: Recorded): Omit<AuthEventRow, 'time'> | undefined {
    if (!r.tenantId) return undefined;
    const { decision } = r;
    const device = decision.result === 'allow' ? decision.device : r.device;
    return {
      tenantId: r.tenantId,
      result: decision.result,
      reason: decision.result === 'deny' ? decision.reason : undefined,
      message: decision.result === 'deny' ? decision.message : `device ${device!.name} authenticated (${decision.matchedBy})`,
      clientId: req.clientId.slice(0, 256),
      deviceId: device?.id,
      deviceName: device?.name,
      fingerprint: r.leaf?.sha256,
    };
  }

  /** Keeps a decision for its next requests, with what answering and recording it again needs. */
  function keep(key: string, req: AuthenticateRequest, r: Recorded, generation: number, now: Date): void {
    const event = authEventOf(req, r);
    if (event) r.encodeEvent = authEventEncoder(event);
    keptBodies.set(r.decision, JSON.stringify(r.decision));
    decisions.set(key, { generation, expires: now.getTime() + CACHE_TTL_SECONDS * 1000, resolution: r });
  }

  function record(req: AuthenticateRequest, r: Recorded, now: Date, started: bigint): void {
    const { decision } = r;
    const reason = decision.result === 'deny' ? decision.reason : undefined;
    metrics?.verifierDecisions.labels(decision.result, reason ?? '').inc();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    metrics?.verifierDuration.labels(decision.result).observe(seconds);
    const device = decision.result === 'allow' ? decision.device : r.device;
    // The caller's line (the HTTP request, the MQTT CONNECT) carries the decision at info; this one
    // adds the verifier's own timing at debug. Checked first: the fields would be gathered for nothing.
    if (logger && logger.isLevelEnabled?.('debug') !== false) logger.debug(
      {
        tenantId: r.tenantId,
        deviceId: device?.id,
        deviceName: device?.name,
        clientId: req.clientId,
        result: decision.result,
        reason,
        responseTime: Math.round(seconds * 1e6) / 1e3,
      },
      'auth decision',
    );
    const event = r.encodeEvent ? undefined : authEventOf(req, r);
    const encode = r.encodeEvent ?? (event && authEventEncoder(event));
    if (encode) authEvents.add(encode(now));
    // Every leaf that authenticates is a sighting: new CA-issued leaves become OBSERVED credentials
    // (rotation history), known ones, whichever their source, get `lastSeenAt`.
    if (decision.result === 'allow' && r.leaf) {
      const leaf = r.leaf;
      observed.add({
        credentialsId: leaf.sha256,
        tenantId: decision.tenantId,
        deviceId: decision.device.id,
        certDer: leaf.der,
        subject: leaf.subject,
        issuer: leaf.issuer,
        serialNumber: leaf.serialNumberHex,
        notBefore: leaf.notBefore,
        notAfter: leaf.notAfter,
        seenAt: now,
      });
    }
  }

  const verifier: Verifier & {
    decide: typeof decide;
    flush(): Promise<void>;
    close(): Promise<void>;
  } = {
    async authenticate(req: AuthenticateRequest): Promise<Decision> {
      const started = process.hrtime.bigint();
      const now = clock();
      const key = cacheKey(req);
      const found = decisions.get(key);
      const hit = found && found.expires > now.getTime() ? found : undefined;
      let r: Recorded;
      if (hit && cache.live && hit.generation === cache.generation && (!hit.resolution.leaf || hit.resolution.leaf.notAfter > now)) {
        r = hit.resolution;
        cacheHits?.inc();
      } else {
        cacheMisses?.inc();
        const generation = cache.generation;
        // A chain asked for the first time is mostly never asked for again (see SeenBefore): neither
        // its decision nor its parsed leaf is kept.
        const repeated = seenBefore.check(key);
        const decided = await decide(req, req.tenantId === undefined ? { repeated } : { repeated, tenantId: req.tenantId });
        const { leaf, ...rest } = decided;
        r = leaf ? { ...rest, leaf: leafFacts(leaf) } : decided;
        // A decision made while a change arrived, or while changes cannot be seen, may be stale: do
        // not keep it.
        if (repeated && generation === cache.generation && cache.live) keep(key, req, r, generation, now);
      }
      record(req, r, now, started);
      return r.decision;
    },
    decide,
    async flush() {
      await observed.flush();
      await authEvents.flush();
    },
    async close() {
      // Both wait at once: a database that is away costs the wait once, not twice.
      await Promise.all([observed.close(), authEvents.close()]);
    },
  };
  return verifier;
}
export type CertgateVerifier = ReturnType<typeof createVerifier>;
