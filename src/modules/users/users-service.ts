import type { Db } from '../../db/prisma.js';
import { isRecordMissing, isUniqueViolation } from '../../db/prisma-errors.js';
import { ConflictError, NotFoundError, UnprocessableError } from '../../errors.js';
import { hashPassword } from '../../lib/passwords.js';
import { MANAGEMENT_TENANT, type Role } from '../../plugins/auth.js';
import type { CreateUserInput, UpdateUserInput, UserView } from './users-schemas.js';

type UserRow = { id: string; userName: string; email: string | null; roles: string[]; creationTime: Date };

function toView(u: UserRow): UserView {
  return {
    id: u.id,
    userName: u.userName,
    ...(u.email ? { email: u.email } : {}),
    roles: u.roles as Role[],
    creationTime: u.creationTime.toISOString(),
  };
}

export function createUsersService({ db }: { db: Pick<Db, 'user'> }) {
  return {
    async create(tenantId: string, input: CreateUserInput): Promise<UserView> {
      if (input.roles.includes('ROLE_TENANT_MANAGEMENT') && tenantId !== MANAGEMENT_TENANT) {
        throw new UnprocessableError('ROLE_TENANT_MANAGEMENT exists only in the management tenant', 'user/InvalidRole');
      }
      const passwordHash = await hashPassword(input.password);
      try {
        const u = await db.user.create({
          data: { tenantId, userName: input.userName, email: input.email, passwordHash, roles: [...new Set(input.roles)] },
        });
        return toView(u);
      } catch (err) {
        if (isUniqueViolation(err)) throw new ConflictError(`User ${input.userName} already exists`, 'user/Duplicate');
        throw err;
      }
    },

    /** Sets the password and/or the roles of a user; who may is the router's decision. */
    async update(tenantId: string, userName: string, input: UpdateUserInput): Promise<UserView> {
      if (input.roles?.includes('ROLE_TENANT_MANAGEMENT') && tenantId !== MANAGEMENT_TENANT) {
        throw new UnprocessableError('ROLE_TENANT_MANAGEMENT exists only in the management tenant', 'user/InvalidRole');
      }
      const data = {
        ...(input.password !== undefined ? { passwordHash: await hashPassword(input.password) } : {}),
        ...(input.roles !== undefined ? { roles: [...new Set(input.roles)] } : {}),
      };
      try {
        return toView(await db.user.update({ where: { tenantId_userName: { tenantId, userName } }, data }));
      } catch (err) {
        if (isRecordMissing(err)) throw new NotFoundError(`User ${userName} not found`, 'user/NotFound');
        throw err;
      }
    },

    async list(tenantId: string, skip: number, take: number, withTotal: boolean) {
      const where = { tenantId };
      const [items, total] = await Promise.all([
        db.user.findMany({ where, orderBy: { userName: 'asc' }, skip, take }),
        withTotal ? db.user.count({ where }) : Promise.resolve(undefined),
      ]);
      return { items: items.map(toView), total };
    },

    async remove(tenantId: string, userName: string, actingUser: string): Promise<void> {
      if (userName === actingUser) {
        throw new UnprocessableError('You cannot delete your own user', 'user/SelfDelete');
      }
      const { count } = await db.user.deleteMany({ where: { tenantId, userName } });
      if (count === 0) throw new NotFoundError(`User ${userName} not found`, 'user/NotFound');
    },
  };
}
export type UsersService = ReturnType<typeof createUsersService>;
