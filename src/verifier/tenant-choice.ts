import type { AuthenticateRequest } from './verifier-types.js';

/** A tenant whose trusted certificate ends a valid, unrevoked path for the chain. */
export interface TenantClaim {
  tenantId: string;
  /** The tenant's copy of the certificate the path ends at. */
  anchor: { popValid: boolean; creationTime: Date };
}

export type TenantChoice<C extends TenantClaim> =
  | { ok: true; claim: C; why: 'only' | 'hint' | 'possession' | 'first' }
  | { ok: false; reason: 'AMBIGUOUS_TENANT'; message: string; provers: string[] };

/**
 * The tenant hint: `username` is a tenant id (or Cumulocity's MQTT login `<tenantId>/<user>`),
 * or SNI is `<tenantId>.<anything>`; `username` first.
 */
export function hintedTenant(req: Pick<AuthenticateRequest, 'username' | 'sni'>, candidates: readonly string[]): string | undefined {
  const userTenant = req.username?.split('/')[0];
  if (userTenant && candidates.includes(userTenant)) return userTenant;
  const sniTenant = req.sni?.split('.')[0];
  if (sniTenant && candidates.includes(sniTenant)) return sniTenant;
  return undefined;
}

/**
 * Which of several tenants trusting the chain's anchor gets the connection. A hint naming one of
 * them decides. Without one, the single tenant that proved possession of the CA's key, else the
 * tenant that trusted it first; several that proved possession cannot be told apart. So anyone
 * may upload a public CA certificate, but doing so never takes another tenant's devices: only
 * proving possession of the key does.
 */
export function chooseTenant<C extends TenantClaim>(claims: readonly C[], hint: Pick<AuthenticateRequest, 'username' | 'sni'>): TenantChoice<C> {
  if (claims.length === 1) return { ok: true, claim: claims[0]!, why: 'only' };
  const hinted = hintedTenant(hint, claims.map((c) => c.tenantId));
  if (hinted) return { ok: true, claim: claims.find((c) => c.tenantId === hinted)!, why: 'hint' };
  const provers = claims.filter((c) => c.anchor.popValid);
  if (provers.length === 1) return { ok: true, claim: provers[0]!, why: 'possession' };
  if (provers.length > 1) {
    return {
      ok: false,
      reason: 'AMBIGUOUS_TENANT',
      message: 'several tenants proved possession of this chain\'s CA key; give the tenant id as username or in SNI',
      provers: provers.map((c) => c.tenantId),
    };
  }
  // Ties (the same millisecond) go by tenant id, so every process chooses alike.
  const first = [...claims].sort(
    (a, b) => a.anchor.creationTime.getTime() - b.anchor.creationTime.getTime() || (a.tenantId < b.tenantId ? -1 : a.tenantId > b.tenantId ? 1 : 0),
  )[0]!;
  return { ok: true, claim: first, why: 'first' };
}
