import type { Db } from '../../db/prisma.js';
import type { Tenant } from '../../generated/prisma/client.js';

export type { Tenant };

export function createTenantsRepository(db: Pick<Db, 'tenant'>) {
  return {
    find(id: string, tx: Pick<Db, 'tenant'> = db): Promise<Tenant | null> {
      return tx.tenant.findUnique({ where: { id } });
    },
    async list(skip: number, take: number, withTotal: boolean): Promise<{ items: Tenant[]; total?: number }> {
      const [items, total] = await Promise.all([
        db.tenant.findMany({ orderBy: { creationTime: 'asc' }, skip, take }),
        withTotal ? db.tenant.count() : Promise.resolve(undefined),
      ]);
      return { items, total };
    },
  };
}
export type TenantsRepository = ReturnType<typeof createTenantsRepository>;
