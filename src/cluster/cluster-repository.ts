import type { PrismaClient } from '../db/prisma.js';
import type { TrustedCertificateRow } from './cluster-service.js';

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
