import type { PrismaClient } from '../db/prisma.js';
import { isUuid } from '../lib/ids.js';
import type { SyncRepository, SyncTrustedCertificate } from './broker-sync.js';
import type { TrustedCertificateRow } from './cluster-service.js';

type Db = Pick<PrismaClient, 'trustedCertificate' | 'deviceCredential' | 'device'>;

export function createClusterRepository(prisma: Pick<PrismaClient, 'trustedCertificate'>) {
  return {
    enabledTrustedCertificates(): Promise<TrustedCertificateRow[]> {
      return prisma.trustedCertificate.findMany({
        where: { status: 'ENABLED' },
        select: { fingerprint: true, certDer: true },
        orderBy: { fingerprint: 'asc' },
      });
    },
  };
}

/** What `certgate emqx sync` and `certgate vernemq sync` read. */
export function createSyncRepository(prisma: Db): SyncRepository {
  const deviceIds = (rows: Array<{ deviceId: string }>) => [...new Set(rows.map((r) => r.deviceId))];
  return {
    trustedCertificates(): Promise<SyncTrustedCertificate[]> {
      return prisma.trustedCertificate.findMany({
        select: { tenantId: true, fingerprint: true, subject: true, status: true, certDer: true },
        orderBy: { fingerprint: 'asc' },
      });
    },
    async devicesWithIssuer(tenantId, issuer) {
      return deviceIds(await prisma.deviceCredential.findMany({ where: { tenantId, issuer }, select: { deviceId: true } }));
    },
    async devicesWithSerials(tenantId, serialHexes, issuer) {
      // Stored as the certificate prints it, without leading zeros; compared without case.
      const rows = await prisma.deviceCredential.findMany({
        where: { tenantId, serialNumber: { in: [...serialHexes], mode: 'insensitive' }, ...(issuer === undefined ? {} : { issuer }) },
        select: { deviceId: true },
      });
      return deviceIds(rows);
    },
    async deviceActive(tenantId, deviceId) {
      if (!isUuid(deviceId)) return false;
      const found = await prisma.device.findFirst({
        where: { id: deviceId, tenantId, status: 'ACTIVE', tenant: { status: 'ACTIVE' } },
        select: { id: true },
      });
      return found !== null;
    },
  };
}
