import crypto from 'node:crypto';
import type { PrismaClient } from '../../db/prisma.js';
import { generateSecret, hashPassword, sha256Hex } from '../../lib/passwords.js';
import { MANAGEMENT_TENANT } from '../../plugins/auth.js';
import { defaultProfileData } from '../device-profiles/device-profiles-defaults.js';

export const MANAGEMENT_ADMIN = 'admin';
const VERIFIER_TOKEN_KEY = 'verifier_token_sha256';

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
  await prisma.tenant.upsert({
    where: { id: MANAGEMENT_TENANT },
    create: { id: MANAGEMENT_TENANT, company: 'certgate management', domain: 'management' },
    update: {},
  });
  const profile = await prisma.deviceProfile.findFirst({ where: { tenantId: MANAGEMENT_TENANT, isDefault: true } });
  if (!profile) await prisma.deviceProfile.create({ data: { tenantId: MANAGEMENT_TENANT, ...defaultProfileData() } });

  const roles = ['ROLE_TENANT_MANAGEMENT', 'ROLE_TENANT_ADMIN'];
  const where = { tenantId_userName: { tenantId: MANAGEMENT_TENANT, userName: MANAGEMENT_ADMIN } };
  if (opts.adminPassword) {
    const passwordHash = await hashPassword(opts.adminPassword);
    await prisma.user.upsert({
      where,
      create: { tenantId: MANAGEMENT_TENANT, userName: MANAGEMENT_ADMIN, passwordHash, roles },
      update: { passwordHash },
    });
  } else if (!(await prisma.user.findUnique({ where }))) {
    const password = generateSecret(15);
    const passwordHash = await hashPassword(password);
    try {
      await prisma.user.create({ data: { tenantId: MANAGEMENT_TENANT, userName: MANAGEMENT_ADMIN, passwordHash, roles } });
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
      const token = `cgv_${crypto.randomBytes(24).toString('base64url')}`;
      const value = sha256Hex(token);
      const saved = await prisma.setting.upsert({ where: { key: VERIFIER_TOKEN_KEY }, create: { key: VERIFIER_TOKEN_KEY, value }, update: {} });
      result.verifierTokenSha256 = saved.value;
      if (saved.value === value) result.generatedVerifierToken = token;
    }
  }
  return result as BootstrapResult;
}
