import crypto from 'node:crypto';
import type { PrismaClient } from '../../db/prisma.js';
import { generateSecret, hashPassword, sha256Hex } from '../../lib/passwords.js';
import { MANAGEMENT_TENANT } from '../../plugins/auth.js';
import { defaultProfileData } from '../device-profiles/device-profiles-defaults.js';

export const MANAGEMENT_ADMIN = 'admin';
const VERIFIER_TOKEN_KEY = 'verifier_token_sha256';
const ADMIN_ROLES = ['ROLE_TENANT_MANAGEMENT', 'ROLE_TENANT_ADMIN'];
const ADMIN_WHERE = { tenantId_userName: { tenantId: MANAGEMENT_TENANT, userName: MANAGEMENT_ADMIN } };

export interface BootstrapResult {
  /** Set only when the password was generated now: shown once, never stored in clear. */
  generatedAdminPassword?: string;
  /** Set only when the token was generated now. */
  generatedVerifierToken?: string;
  /** SHA-256 of the verifier token the verifier route accepts. */
  verifierTokenSha256: string;
}

/**
 * Makes sure the management tenant and its admin exist. A configured password replaces the
 * stored one at every start; otherwise one is generated on first start only.
 */
export async function bootstrapManagement(
  prisma: Pick<PrismaClient, '$transaction' | 'tenant' | 'user' | 'deviceProfile' | 'setting'>,
  opts: { adminPassword?: string; verifierToken?: string },
): Promise<BootstrapResult> {
  const result: Partial<BootstrapResult> = {};
  await ensureManagementTenant(prisma);
  if (opts.adminPassword) {
    await setAdminPassword(prisma, opts.adminPassword);
  } else if (!(await prisma.user.findUnique({ where: ADMIN_WHERE }))) {
    const password = generateSecret(15);
    const passwordHash = await hashPassword(password);
    try {
      await prisma.user.create({ data: { tenantId: MANAGEMENT_TENANT, userName: MANAGEMENT_ADMIN, passwordHash, roles: ADMIN_ROLES } });
      result.generatedAdminPassword = password;
    } catch {
      // another process starting at the same moment created it first; its password stands
    }
  }

  if (opts.verifierToken) {
    result.verifierTokenSha256 = sha256Hex(opts.verifierToken);
  } else {
    const stored = await prisma.setting.findUnique({ where: { key: VERIFIER_TOKEN_KEY } });
    if (stored) {
      result.verifierTokenSha256 = stored.value;
    } else {
      const token = newVerifierToken();
      const value = sha256Hex(token);
      const saved = await prisma.setting.upsert({ where: { key: VERIFIER_TOKEN_KEY }, create: { key: VERIFIER_TOKEN_KEY, value }, update: {} });
      result.verifierTokenSha256 = saved.value;
      if (saved.value === value) result.generatedVerifierToken = token;
    }
  }
  return result as BootstrapResult;
}

async function ensureManagementTenant(prisma: Pick<PrismaClient, 'tenant' | 'deviceProfile'>): Promise<void> {
  await prisma.tenant.upsert({
    where: { id: MANAGEMENT_TENANT },
    create: { id: MANAGEMENT_TENANT, company: 'certgate management', domain: 'management' },
    update: {},
  });
  const profile = await prisma.deviceProfile.findFirst({ where: { tenantId: MANAGEMENT_TENANT, isDefault: true } });
  if (!profile) await prisma.deviceProfile.create({ data: { tenantId: MANAGEMENT_TENANT, ...defaultProfileData() } });
}

/** Sets management/admin's password, making the user when missing. */
async function setAdminPassword(prisma: Pick<PrismaClient, 'user'>, password: string): Promise<void> {
  const passwordHash = await hashPassword(password);
  await prisma.user.upsert({
    where: ADMIN_WHERE,
    create: { tenantId: MANAGEMENT_TENANT, userName: MANAGEMENT_ADMIN, passwordHash, roles: ADMIN_ROLES },
    update: { passwordHash },
  });
}

/**
 * Removes what `bootstrapManagement` generated in a start that then failed, so the next start
 * generates (and shows) them again instead of keeping secrets nobody saw.
 */
export async function forgetGeneratedSecrets(
  prisma: Pick<PrismaClient, 'user' | 'setting'>,
  boot: Pick<BootstrapResult, 'generatedAdminPassword' | 'generatedVerifierToken' | 'verifierTokenSha256'>,
): Promise<void> {
  if (boot.generatedAdminPassword) {
    await prisma.user.deleteMany({ where: { tenantId: MANAGEMENT_TENANT, userName: MANAGEMENT_ADMIN } });
  }
  if (boot.generatedVerifierToken) {
    await prisma.setting.deleteMany({ where: { key: VERIFIER_TOKEN_KEY, value: boot.verifierTokenSha256 } });
  }
}

export interface ResetSecrets {
  /** The new password of management/admin, when it was reset. */
  adminPassword?: string;
  /** The new verifier token, when it was reset. */
  verifierToken?: string;
}

/**
 * New generated secrets for `certgate reset-secrets`: the management admin's password (the
 * management tenant and its admin are made when missing) and/or the stored verifier token. Both
 * are stored hashed; the values are returned to be shown once.
 */
export async function resetSecrets(
  prisma: Pick<PrismaClient, '$transaction' | 'tenant' | 'user' | 'deviceProfile' | 'setting'>,
  what: { adminPassword: boolean; verifierToken: boolean },
): Promise<ResetSecrets> {
  const out: ResetSecrets = {};
  if (what.adminPassword) {
    const password = generateSecret(15);
    await ensureManagementTenant(prisma);
    await setAdminPassword(prisma, password);
    out.adminPassword = password;
  }
  if (what.verifierToken) {
    const token = newVerifierToken();
    const value = sha256Hex(token);
    await prisma.setting.upsert({ where: { key: VERIFIER_TOKEN_KEY }, create: { key: VERIFIER_TOKEN_KEY, value }, update: { value } });
    out.verifierToken = token;
  }
  return out;
}

function newVerifierToken(): string {
  return `cgv_${crypto.randomBytes(24).toString('base64url')}`;
}
