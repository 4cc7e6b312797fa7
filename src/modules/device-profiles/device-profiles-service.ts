import type { DeviceProfile } from '../../generated/prisma/client.js';
import type { PrismaClient } from '../../db/prisma.js';
import { isUniqueViolation } from '../../db/prisma-errors.js';
import type { ChangePublisher, SqlExecutor } from '../../db/change-feed.js';
import { ConflictError, NotFoundError, UnprocessableError } from '../../errors.js';
import { isUuid } from '../../lib/ids.js';
import { checkRegexSafety } from '../../pki/identity.js';
import { defaultProfileData } from './device-profiles-defaults.js';
import type {
  CreateDeviceProfileInput,
  DeviceProfileView,
  UpdateDeviceProfileInput,
} from './device-profiles-schemas.js';

export function toDeviceProfileView(p: DeviceProfile): DeviceProfileView {
  return {
    id: p.id,
    name: p.name,
    default: p.isDefault,
    identity: {
      source: p.identitySource,
      pattern: p.identityPattern,
      ...(p.identityUriPrefix ? { uriPrefix: p.identityUriPrefix } : {}),
    },
    clientIdPolicy: p.clientIdPolicy,
    autoRegistration: p.maxNewDevicesPerHour === null ? {} : { maxNewDevicesPerHour: p.maxNewDevicesPerHour },
    acl: {
      publish: p.aclPublish,
      subscribe: p.aclSubscribe,
      ...(p.aclDenyPublish.length || p.aclDenySubscribe.length
        ? { deny: { publish: p.aclDenyPublish, subscribe: p.aclDenySubscribe } }
        : {}),
    },
    creationTime: p.creationTime.toISOString(),
  };
}

/** A pattern is compiled as RE2 when written, so one the verifier cannot run never gets stored. */
function assertSafePattern(pattern: string): void {
  const check = checkRegexSafety(pattern);
  if (!check.ok) {
    throw new UnprocessableError(`identity.pattern is rejected: ${check.message}`, 'deviceProfile/InvalidPattern');
  }
}

const notFound = (id: string) => new NotFoundError(`Device profile ${id} not found`, 'deviceProfile/NotFound');

export interface DeviceProfilesServiceDeps {
  prisma: Pick<PrismaClient, '$transaction' | 'deviceProfile' | 'device'>;
  publisher: ChangePublisher;
}

export function createDeviceProfilesService({ prisma, publisher }: DeviceProfilesServiceDeps) {
  const changed = (tenantId: string, tx: SqlExecutor) => publisher.publish([{ type: 'invalidate', tenantId, what: 'device-profiles' }], tx);

  async function find(tenantId: string, id: string): Promise<DeviceProfile> {
    const p = isUuid(id) ? await prisma.deviceProfile.findFirst({ where: { id, tenantId } }) : null;
    if (!p) throw notFound(id);
    return p;
  }

  return {
    find,

    async create(tenantId: string, input: CreateDeviceProfileInput): Promise<DeviceProfileView> {
      const defaults = defaultProfileData();
      const identity = input.identity ?? { source: 'COMMON_NAME' as const, pattern: defaults.identityPattern };
      assertSafePattern(identity.pattern);
      try {
        const p = await prisma.$transaction(async (tx) => {
          if (input.default) await tx.deviceProfile.updateMany({ where: { tenantId, isDefault: true }, data: { isDefault: false } });
          await changed(tenantId, tx);
          return tx.deviceProfile.create({
            data: {
              tenantId,
              name: input.name,
              isDefault: input.default ?? false,
              identitySource: identity.source,
              identityPattern: identity.pattern,
              identityUriPrefix: identity.uriPrefix ?? null,
              clientIdPolicy: input.clientIdPolicy ?? defaults.clientIdPolicy,
              maxNewDevicesPerHour: input.autoRegistration?.maxNewDevicesPerHour ?? null,
              aclPublish: input.acl?.publish ?? defaults.aclPublish,
              aclSubscribe: input.acl?.subscribe ?? defaults.aclSubscribe,
              aclDenyPublish: input.acl?.deny?.publish ?? [],
              aclDenySubscribe: input.acl?.deny?.subscribe ?? [],
            },
          });
        });
        return toDeviceProfileView(p);
      } catch (err) {
        if (isUniqueViolation(err)) throw new ConflictError(`Device profile ${input.name} already exists`, 'deviceProfile/Duplicate');
        throw err;
      }
    },

    async list(tenantId: string, skip: number, take: number, withTotal: boolean) {
      const where = { tenantId };
      const [items, total] = await Promise.all([
        prisma.deviceProfile.findMany({ where, orderBy: [{ creationTime: 'asc' }, { id: 'asc' }], skip, take }),
        withTotal ? prisma.deviceProfile.count({ where }) : Promise.resolve(undefined),
      ]);
      return { items: items.map(toDeviceProfileView), total };
    },

    async get(tenantId: string, id: string): Promise<DeviceProfileView> {
      return toDeviceProfileView(await find(tenantId, id));
    },

    async update(tenantId: string, id: string, input: UpdateDeviceProfileInput): Promise<DeviceProfileView> {
      const current = await find(tenantId, id);
      if (input.identity?.pattern !== undefined) assertSafePattern(input.identity.pattern);
      try {
        const p = await prisma.$transaction(async (tx) => {
          if (input.default) {
            await tx.deviceProfile.updateMany({ where: { tenantId, isDefault: true, NOT: { id } }, data: { isDefault: false } });
          }
          await changed(tenantId, tx);
          return tx.deviceProfile.update({
            where: { id: current.id },
            data: {
              name: input.name,
              isDefault: input.default ? true : undefined,
              identitySource: input.identity?.source,
              identityPattern: input.identity?.pattern,
              identityUriPrefix: input.identity && 'uriPrefix' in input.identity ? (input.identity.uriPrefix ?? null) : undefined,
              clientIdPolicy: input.clientIdPolicy,
              maxNewDevicesPerHour:
                input.autoRegistration && 'maxNewDevicesPerHour' in input.autoRegistration
                  ? (input.autoRegistration.maxNewDevicesPerHour ?? null)
                  : undefined,
              aclPublish: input.acl?.publish,
              aclSubscribe: input.acl?.subscribe,
              aclDenyPublish: input.acl?.deny?.publish,
              aclDenySubscribe: input.acl?.deny?.subscribe,
            },
          });
        });
        return toDeviceProfileView(p);
      } catch (err) {
        if (isUniqueViolation(err)) throw new ConflictError(`Device profile ${input.name} already exists`, 'deviceProfile/Duplicate');
        throw err;
      }
    },

    async remove(tenantId: string, id: string): Promise<void> {
      const p = await find(tenantId, id);
      if (p.isDefault) {
        throw new UnprocessableError('The default profile cannot be deleted; make another profile the default first', 'deviceProfile/IsDefault');
      }
      const inUse = await prisma.device.count({ where: { deviceProfileId: p.id } });
      if (inUse > 0) {
        throw new ConflictError(`Device profile ${p.name} is used by ${inUse} device(s)`, 'deviceProfile/InUse');
      }
      await prisma.$transaction(async (tx) => {
        await tx.deviceProfile.delete({ where: { id: p.id } });
        await changed(tenantId, tx);
      });
    },

    /** The profile a device or trusted certificate falls back to. */
    async defaultProfile(tenantId: string): Promise<DeviceProfile> {
      const p = await prisma.deviceProfile.findFirst({ where: { tenantId, isDefault: true } });
      if (!p) throw new NotFoundError(`Tenant ${tenantId} not found`, 'tenant/NotFound');
      return p;
    },
  };
}
export type DeviceProfilesService = ReturnType<typeof createDeviceProfilesService>;
