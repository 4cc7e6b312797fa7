import crypto from 'node:crypto';
import type { PrismaClient } from '../../db/prisma.js';
import { isRecordMissing, isUniqueViolation } from '../../db/prisma-errors.js';
import type { ChangePublisher } from '../../db/change-feed.js';
import { ConflictError, ForbiddenError, NotFoundError } from '../../errors.js';
import { hashPassword } from '../../lib/passwords.js';
import { MANAGEMENT_TENANT } from '../../plugins/auth.js';
import { defaultProfileData } from '../device-profiles/device-profiles-defaults.js';
import type { CreateTenantInput, TenantView, UpdateTenantInput } from './tenants-schemas.js';
import type { Tenant, TenantsRepository } from './tenants-repository.js';

export interface TenantsServiceDeps {
  prisma: Pick<PrismaClient, '$transaction' | 'tenant'>;
  repository: TenantsRepository;
  publisher: ChangePublisher;
}

export function toTenantView(t: Tenant): TenantView {
  return {
    id: t.id,
    company: t.company,
    domain: t.domain,
    status: t.status,
    creationTime: t.creationTime.toISOString(),
  };
}

export function createTenantsService({ prisma, repository, publisher }: TenantsServiceDeps) {
  return {
    /** Creates the tenant, its first administrator and its default device profile together. */
    async create(input: CreateTenantInput): Promise<TenantView> {
      const id = input.id ?? `t${crypto.randomBytes(4).toString('hex')}`;
      const passwordHash = await hashPassword(input.adminPass);
      try {
        const tenant = await prisma.$transaction(async (tx) => {
          const t = await tx.tenant.create({ data: { id, company: input.company, domain: input.domain } });
          await tx.user.create({
            data: {
              tenantId: id,
              userName: input.adminName,
              email: input.adminEmail,
              passwordHash,
              roles: ['ROLE_TENANT_ADMIN'],
            },
          });
          await tx.deviceProfile.create({ data: { tenantId: id, ...defaultProfileData() } });
          return t;
        });
        return toTenantView(tenant);
      } catch (err) {
        if (isUniqueViolation(err)) throw new ConflictError(`Tenant ${id} already exists`, 'tenant/Duplicate');
        throw err;
      }
    },

    async list(skip: number, take: number, withTotal: boolean) {
      const page = await repository.list(skip, take, withTotal);
      return { items: page.items.map(toTenantView), total: page.total };
    },

    async get(id: string): Promise<TenantView> {
      const t = await repository.find(id);
      if (!t) throw new NotFoundError(`Tenant ${id} not found`, 'tenant/NotFound');
      return toTenantView(t);
    },

    async update(id: string, input: UpdateTenantInput, byManagement: boolean): Promise<TenantView> {
      if (input.status !== undefined && !byManagement) {
        throw new ForbiddenError('Only the management tenant may suspend or activate a tenant');
      }
      if (id === MANAGEMENT_TENANT && input.status === 'SUSPENDED') {
        throw new ForbiddenError('The management tenant cannot be suspended');
      }
      try {
        const before = await repository.find(id);
        if (!before) throw new NotFoundError(`Tenant ${id} not found`, 'tenant/NotFound');
        const t = await prisma.$transaction(async (tx) => {
          // The status right before this write, under its row lock (see trusted certificates).
          const [locked] = await tx.$queryRaw<Array<{ status: string }>>`SELECT status::text AS status FROM "Tenant" WHERE id = ${id} FOR UPDATE`;
          const updated = await tx.tenant.update({ where: { id }, data: input });
          await publisher.publish(
            [
              { type: 'invalidate', tenantId: id, what: 'tenant' },
              ...((locked?.status ?? before.status) !== 'SUSPENDED' && updated.status === 'SUSPENDED'
                ? [{ type: 'session-drop' as const, change: { kind: 'tenant' as const, tenantId: id } }]
                : []),
            ],
            tx,
          );
          return updated;
        });
        return toTenantView(t);
      } catch (err) {
        if (isRecordMissing(err)) throw new NotFoundError(`Tenant ${id} not found`, 'tenant/NotFound');
        throw err;
      }
    },

    /** Removes the tenant and, by cascade, everything it owns. */
    async remove(id: string): Promise<void> {
      if (id === MANAGEMENT_TENANT) throw new ForbiddenError('The management tenant cannot be deleted');
      try {
        await prisma.$transaction(async (tx) => {
          await tx.tenant.delete({ where: { id } });
          await publisher.publish(
            [
              { type: 'invalidate', tenantId: id, what: 'tenant' },
              { type: 'session-drop', change: { kind: 'tenant', tenantId: id } },
              { type: 'tenant-deleted', tenantId: id },
            ],
            tx,
          );
        });
      } catch (err) {
        if (isRecordMissing(err)) throw new NotFoundError(`Tenant ${id} not found`, 'tenant/NotFound');
        throw err;
      }
    },
  };
}
export type TenantsService = ReturnType<typeof createTenantsService>;
