/**
 * Steps (2) and (3) of a decision: paths from a chain to the trusted certificates of every
 * tenant that trusts one of its issuers, revocation in each such tenant, and the tenant that
 * gets the chain when several do.
 */
import { LRUCache } from 'lru-cache';
import type { ParsedCertificate } from '../pki/certificate.js';
import { nameHash } from '../pki/name-hash.js';
import { validatePath, type TraceStep } from '../pki/path-validation.js';
import { denied, MAX_CHAIN_LENGTH, note, revocation, type Denied, type Result } from './decision-steps.js';
import { chooseTenant } from './tenant-choice.js';
import type { TrustCache, TrustedEntry } from './trust-cache.js';
import type { AuthenticateRequest } from './verifier-types.js';

export interface Chain {
  leaf: ParsedCertificate;
  presented: ParsedCertificate[];
}

/** A tenant whose enabled trusted certificate ends a valid, unrevoked path for the chain. */
export interface Claim {
  tenantId: string;
  anchor: TrustedEntry;
  path: readonly ParsedCertificate[];
}

export interface TenantScope {
  /** Only this tenant's trusted certificates count (the explain endpoint, a broker's tenant prefix). */
  tenantId?: string;
  trace?: TraceStep[];
}

export function createTrustPaths(cache: Pick<TrustCache, 'trustedBySubjectHash' | 'revocations'>) {
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

  /** The path in one tenant, among the anchors it trusts: a listed credential's (step 1). */
  async function pathForCredential(chain: Chain, tenantId: string, now: Date, trace?: TraceStep[]): Promise<Result<Claim>> {
    const anchors = await candidateAnchors([chain.leaf, ...chain.presented], tenantId);
    return pathInTenant(chain, tenantId, anchors, now, trace);
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
  async function anchorTenant(hint: Pick<AuthenticateRequest, 'username' | 'sni'>, chain: Chain, now: Date, scope: TenantScope): Promise<Result<Claim>> {
    const { trace } = scope;
    const candidates = await candidateAnchors([chain.leaf, ...chain.presented], scope.tenantId);
    if (candidates.length === 0) {
      note(trace, 'anchor', false, 'no trusted certificate issued any certificate of the chain');
      return denied('NO_TRUSTED_ANCHOR', 'no trusted certificate matches the chain', scope.tenantId);
    }
    if (trace) note(trace, 'anchor', true, `candidate trusted certificates: ${candidates.map((c) => `${c.tenantId}/${c.fingerprint}`).join(', ')}`);

    const { claims, failure } = await claimsOf(chain, candidates, now, trace);
    if (claims.length === 0) {
      note(trace, 'path', false, failure!.message);
      return failure!;
    }
    const choice = chooseTenant(claims, hint);
    if (!choice.ok) {
      note(trace, 'tenant choice', false, `several tenants proved possession of this chain's CA key: ${choice.provers.join(', ')}`);
      return denied(choice.reason, choice.message);
    }
    if (scope.tenantId && trace) await explainSharing(choice.claim, chain, now, trace);
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

  return { candidateAnchors, pathForCredential, anchorTenant };
}
