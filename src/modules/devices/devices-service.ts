import type { Device, DeviceCredential } from '../../generated/prisma/client.js';
import type { PrismaClient } from '../../db/prisma.js';
import { isRecordMissing, isUniqueViolation } from '../../db/prisma-errors.js';
import type { ChangeEvent, ChangePublisher } from '../../db/change-feed.js';
import { ConflictError, NotFoundError, UnprocessableError } from '../../errors.js';
import { isUuid } from '../../lib/ids.js';
import { checkCredentialRules } from '../../pki/ca-rules.js';
import { CertificateParseError, parseCertificate, toPemBody } from '../../pki/certificate.js';
import type { CreateDeviceInput, CredentialView, DeviceView, UpdateDeviceInput } from './devices-schemas.js';

export function toDeviceView(d: Device): DeviceView {
  return {
    id: d.id,
    name: d.name,
    deviceProfileId: d.deviceProfileId,
    status: d.status,
    createdBy: d.createdBy,
    pinCredentials: d.pinCredentials,
    creationTime: d.creationTime.toISOString(),
    ...(d.lastConnectedAt ? { lastConnectedAt: d.lastConnectedAt.toISOString() } : {}),
  };
}

export function toCredentialView(c: DeviceCredential): CredentialView {
  return {
    credentialsId: c.credentialsId,
    credentialsType: 'X509_CERTIFICATE',
    deviceId: c.deviceId,
    certInPemFormat: toPemBody(c.certDer),
    subject: c.subject,
    issuer: c.issuer,
    serialNumber: c.serialNumber,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    status: c.status,
    source: c.source,
    ...(c.firstSeenAt ? { firstSeenAt: c.firstSeenAt.toISOString() } : {}),
    ...(c.lastSeenAt ? { lastSeenAt: c.lastSeenAt.toISOString() } : {}),
  };
}

const deviceNotFound = (id: string) => new NotFoundError(`Device ${id} not found`, 'device/NotFound');

export interface DevicesServiceDeps {
  prisma: Pick<PrismaClient, '$transaction' | 'device' | 'deviceProfile' | 'deviceCredential'>;
  publisher: ChangePublisher;
}

export function createDevicesService({ prisma, publisher }: DevicesServiceDeps) {
  async function find(tenantId: string, id: string): Promise<Device> {
    const d = isUuid(id) ? await prisma.device.findFirst({ where: { id, tenantId } }) : null;
    if (!d) throw deviceNotFound(id);
    return d;
  }

  async function profileIdFor(tenantId: string, requested: string | undefined): Promise<string> {
    const p = requested
      ? isUuid(requested)
        ? await prisma.deviceProfile.findFirst({ where: { tenantId, id: requested }, select: { id: true } })
        : null
      : await prisma.deviceProfile.findFirst({ where: { tenantId, isDefault: true }, select: { id: true } });
    if (!p) throw new UnprocessableError(`Device profile ${requested} does not exist in this tenant`, 'device/UnknownProfile');
    return p.id;
  }

  /** The devices changed, under every name they had: caches drop those alone. */
  const changed = (tenantId: string, ...devices: Array<{ id: string; name: string }>): ChangeEvent => ({
    type: 'invalidate',
    tenantId,
    what: 'devices',
    devices: devices.map(({ id, name }) => ({ id, name })),
  });
  const dropSessions = (tenantId: string, ...devices: Array<{ id: string; name: string }>): ChangeEvent[] => [
    changed(tenantId, ...devices),
    { type: 'session-drop', change: { kind: 'device', tenantId, deviceId: devices[0]!.id } },
  ];

  return {
    find,

    async create(tenantId: string, input: CreateDeviceInput): Promise<DeviceView> {
      const deviceProfileId = await profileIdFor(tenantId, input.deviceProfileId);
      try {
        const d = await prisma.$transaction(async (tx) => {
          const created = await tx.device.create({
            data: {
              tenantId,
              name: input.name,
              deviceProfileId,
              status: input.status ?? 'ACTIVE',
              pinCredentials: input.pinCredentials ?? false,
              createdBy: 'API',
            },
          });
          await publisher.publish([changed(tenantId, created)], tx);
          return created;
        });
        return toDeviceView(d);
      } catch (err) {
        if (isUniqueViolation(err)) throw new ConflictError(`Device ${input.name} already exists`, 'device/Duplicate');
        throw err;
      }
    },

    async list(
      tenantId: string,
      filter: { name?: string; credentialsId?: string },
      skip: number,
      take: number,
      withTotal: boolean,
    ) {
      const where = {
        tenantId,
        ...(filter.name !== undefined ? { name: filter.name } : {}),
        ...(filter.credentialsId !== undefined
          ? { credentials: { some: { credentialsId: filter.credentialsId.toLowerCase() } } }
          : {}),
      };
      const [items, total] = await Promise.all([
        prisma.device.findMany({ where, orderBy: [{ creationTime: 'asc' }, { id: 'asc' }], skip, take }),
        withTotal ? prisma.device.count({ where }) : Promise.resolve(undefined),
      ]);
      return { items: items.map(toDeviceView), total };
    },

    async get(tenantId: string, id: string): Promise<DeviceView> {
      return toDeviceView(await find(tenantId, id));
    },

    async update(tenantId: string, id: string, input: UpdateDeviceInput): Promise<DeviceView> {
      const found = await find(tenantId, id);
      const deviceProfileId = input.deviceProfileId === undefined ? undefined : await profileIdFor(tenantId, input.deviceProfileId);
      try {
        const d = await prisma.$transaction(async (tx) => {
          // The device as it is right before this write, read under its row lock: a rename that
          // came in between must be named by this change too, or a cache could keep that name.
          await tx.$executeRaw`SELECT 1 FROM "Device" WHERE id = ${found.id}::uuid FOR UPDATE`;
          const before = await tx.device.findUnique({ where: { id: found.id } });
          if (!before) throw deviceNotFound(id);
          const d = await tx.device.update({
            where: { id: found.id },
            data: { name: input.name, deviceProfileId, status: input.status, pinCredentials: input.pinCredentials },
          });
          // Anything that can narrow what the device may do closes its live sessions.
          const narrowed =
            (before.status === 'ACTIVE' && d.status === 'DISABLED') ||
            (!before.pinCredentials && d.pinCredentials) ||
            before.name !== d.name ||
            before.deviceProfileId !== d.deviceProfileId;
          await publisher.publish(narrowed ? dropSessions(tenantId, before, d) : [changed(tenantId, before, d)], tx);
          return d;
        });
        return toDeviceView(d);
      } catch (err) {
        if (isUniqueViolation(err)) throw new ConflictError(`Device ${input.name} already exists`, 'device/Duplicate');
        throw err;
      }
    },

    async remove(tenantId: string, id: string): Promise<void> {
      const d = await find(tenantId, id);
      try {
        await prisma.$transaction(async (tx) => {
          // The row as it was deleted: its name then is the one caches may hold (see `update`).
          const gone: Device = await tx.device.delete({ where: { id: d.id } });
          // Its credentials went with it: cached ones would still name it. (No ids to add to the indexes.)
          await publisher.publish([{ type: 'invalidate', tenantId, what: 'credentials', credentialsIds: [] }, ...dropSessions(tenantId, gone)], tx);
        });
      } catch (err) {
        if (isRecordMissing(err)) throw deviceNotFound(id);
        throw err;
      }
    },

    async listCredentials(tenantId: string, deviceId: string, skip: number, take: number, withTotal: boolean) {
      const d = await find(tenantId, deviceId);
      const where = { deviceId: d.id };
      const [items, total] = await Promise.all([
        prisma.deviceCredential.findMany({ where, orderBy: [{ creationTime: 'asc' }, { credentialsId: 'asc' }], skip, take }),
        withTotal ? prisma.deviceCredential.count({ where }) : Promise.resolve(undefined),
      ]);
      return { items: items.map(toCredentialView), total };
    },

    /** Lists a certificate for the device. One certificate belongs to at most one device, service-wide. */
    async addCredential(tenantId: string, deviceId: string, pem: string): Promise<CredentialView> {
      const d = await find(tenantId, deviceId);
      let cert;
      try {
        cert = parseCertificate(pem);
      } catch (err) {
        const reason = err instanceof CertificateParseError ? err.message : 'not a certificate';
        throw new UnprocessableError(`credentialsValue is not one X.509 certificate: ${reason}`, 'credentials/InvalidCertificate');
      }
      const problems = checkCredentialRules(cert);
      if (problems.length > 0) {
        throw new UnprocessableError(
          `credentialsValue cannot be accepted: ${problems.map((p) => p.message).join('; ')}`,
          'credentials/NotAcceptable',
          problems,
        );
      }
      try {
        const c = await prisma.$transaction(async (tx) => {
          const created = await tx.deviceCredential.create({
          data: {
            credentialsId: cert.sha256,
            tenantId,
            deviceId: d.id,
            certDer: Buffer.from(cert.der),
            subject: cert.subject,
            issuer: cert.issuer,
            serialNumber: cert.serialNumberHex,
            notBefore: cert.notBefore,
            notAfter: cert.notAfter,
            source: 'API',
          },
          });
          // Naming the credential lets every verifier's credential index learn it without a reload.
          await publisher.publish([{ type: 'invalidate', tenantId, what: 'credentials', credentialsIds: [cert.sha256] }], tx);
          return created;
        });
        return toCredentialView(c);
      } catch (err) {
        if (isUniqueViolation(err)) {
          throw new ConflictError('This certificate already belongs to a device', 'credentials/Duplicate');
        }
        throw err;
      }
    },

    async getCredential(tenantId: string, deviceId: string, credentialsId: string): Promise<CredentialView> {
      const d = await find(tenantId, deviceId);
      const c = await prisma.deviceCredential.findFirst({ where: { credentialsId: credentialsId.toLowerCase(), deviceId: d.id } });
      if (!c) throw new NotFoundError(`Credentials ${credentialsId} not found`, 'credentials/NotFound');
      return toCredentialView(c);
    },

    async setCredentialStatus(
      tenantId: string,
      deviceId: string,
      credentialsId: string,
      status: 'ACTIVE' | 'REVOKED',
    ): Promise<CredentialView> {
      const d = await find(tenantId, deviceId);
      await prisma.$transaction(async (tx) => {
        const { count } = await tx.deviceCredential.updateMany({
          where: { credentialsId: credentialsId.toLowerCase(), deviceId: d.id },
          data: { status },
        });
        if (count === 0) throw new NotFoundError(`Credentials ${credentialsId} not found`, 'credentials/NotFound');
        await publisher.publish(
          status === 'REVOKED'
            ? [{ type: 'invalidate', tenantId, what: 'credentials', credentialsIds: [credentialsId.toLowerCase()] }, ...dropSessions(tenantId, d)]
            : [{ type: 'invalidate', tenantId, what: 'credentials', credentialsIds: [credentialsId.toLowerCase()] }],
          tx,
        );
      });
      return this.getCredential(tenantId, deviceId, credentialsId);
    },

    async removeCredential(tenantId: string, deviceId: string, credentialsId: string): Promise<void> {
      const d = await find(tenantId, deviceId);
      await prisma.$transaction(async (tx) => {
        const { count } = await tx.deviceCredential.deleteMany({
          where: { credentialsId: credentialsId.toLowerCase(), deviceId: d.id },
        });
        if (count === 0) throw new NotFoundError(`Credentials ${credentialsId} not found`, 'credentials/NotFound');
        // A pinned device loses a certificate it may be connected with right now. Read here, not
        // before the transaction: a pin set in between must count.
        const pinned = (await tx.device.findUnique({ where: { id: d.id }, select: { pinCredentials: true } }))?.pinCredentials ?? d.pinCredentials;
        await publisher.publish(
          pinned
            ? [{ type: 'invalidate', tenantId, what: 'credentials', credentialsIds: [credentialsId.toLowerCase()] }, ...dropSessions(tenantId, d)]
            : [{ type: 'invalidate', tenantId, what: 'credentials', credentialsIds: [credentialsId.toLowerCase()] }],
          tx,
        );
      });
    },
  };
}
export type DevicesService = ReturnType<typeof createDevicesService>;
