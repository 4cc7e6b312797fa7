import type { RevokedSerial } from '../../generated/prisma/client.js';
import type { PrismaClient } from '../../db/prisma.js';
import type { ChangeEvent, ChangePublisher } from '../../db/change-feed.js';
import { NotFoundError, UnprocessableError } from '../../errors.js';
import { parseCertificate } from '../../pki/certificate.js';
import { parseCrl, verifyCrlSignature } from '../../pki/crl.js';
import { normalizeSerialHex, type PutCrlInput, type RevokedSerialView } from './revocation-schemas.js';

function toView(r: RevokedSerial): RevokedSerialView {
  return {
    serialNumberInHex: r.serialHex,
    revocationDate: r.revocationDate.toISOString(),
    ...(r.issuerFingerprint ? { issuerFingerprint: r.issuerFingerprint } : {}),
    source: r.source === 'CRL' ? 'CRL' : 'API',
  };
}

export interface RevocationServiceDeps {
  prisma: Pick<PrismaClient, '$transaction' | 'revokedSerial' | 'trustedCertificate'>;
  publisher: ChangePublisher;
}

/** Serial holds and imported CRLs (a revoked serial closes its sessions at once). */
export function createRevocationService({ prisma, publisher }: RevocationServiceDeps) {
  const events = (tenantId: string, serials: Array<{ serialHex: string; issuerFingerprint: string }>): ChangeEvent[] => [
    { type: 'invalidate', tenantId, what: 'revocations' },
    ...serials.map((s) => ({
      type: 'session-drop' as const,
      change: {
        kind: 'serial' as const,
        tenantId,
        serialHex: s.serialHex,
        ...(s.issuerFingerprint ? { issuerFingerprint: s.issuerFingerprint } : {}),
      },
    })),
  ];

  async function list(tenantId: string): Promise<RevokedSerialView[]> {
    const rows = await prisma.revokedSerial.findMany({ where: { tenantId }, orderBy: [{ creationTime: 'asc' }, { serialHex: 'asc' }] });
    return rows.map(toView);
  }

  async function upsertAll(
    tenantId: string,
    entries: Array<{ serialHex: string; issuerFingerprint: string; revocationDate: Date }>,
    source: 'API' | 'CRL',
  ): Promise<void> {
    await prisma.$transaction(async (tx) => {
      for (const e of entries) {
        await tx.revokedSerial.upsert({
          where: { tenantId_serialHex_issuerFingerprint: { tenantId, serialHex: e.serialHex, issuerFingerprint: e.issuerFingerprint } },
          create: { tenantId, serialHex: e.serialHex, issuerFingerprint: e.issuerFingerprint, revocationDate: e.revocationDate, source },
          update: { revocationDate: e.revocationDate },
        });
      }
    });
    await publisher.publish(events(tenantId, entries));
  }

  return {
    list,

    async add(tenantId: string, input: PutCrlInput): Promise<RevokedSerialView[]> {
      const fingerprints = [...new Set(input.crls.flatMap((c) => (c.issuerFingerprint ? [c.issuerFingerprint.toLowerCase()] : [])))];
      if (fingerprints.length) {
        const known = await prisma.trustedCertificate.findMany({
          where: { tenantId, fingerprint: { in: fingerprints } },
          select: { fingerprint: true },
        });
        const missing = fingerprints.filter((f) => !known.some((k) => k.fingerprint === f));
        if (missing.length) {
          throw new UnprocessableError(`issuerFingerprint ${missing.join(', ')} is not a trusted certificate of this tenant`, 'revocation/UnknownIssuer');
        }
      }
      await upsertAll(
        tenantId,
        input.crls.map((c) => ({
          serialHex: normalizeSerialHex(c.serialNumberInHex),
          issuerFingerprint: c.issuerFingerprint?.toLowerCase() ?? '',
          revocationDate: new Date(c.revocationDate),
        })),
        'API',
      );
      return list(tenantId);
    },

    /** Lifts a hold: every entry of the serial, or only the one of `issuerFingerprint`. */
    async lift(tenantId: string, serialInput: string, issuerFingerprint?: string): Promise<void> {
      const serialHex = normalizeSerialHex(serialInput);
      const { count } = await prisma.revokedSerial.deleteMany({
        where: { tenantId, serialHex, ...(issuerFingerprint ? { issuerFingerprint: issuerFingerprint.toLowerCase() } : {}) },
      });
      if (count === 0) throw new NotFoundError(`Serial ${serialHex} is not revoked`, 'revocation/NotFound');
      await publisher.publish([{ type: 'invalidate', tenantId, what: 'revocations' }]);
    },

    /** Imports a CRL signed by one of the tenant's trusted certificates; its serials are held for that CA. */
    async importCrl(tenantId: string, fingerprint: string, body: Buffer | string): Promise<RevokedSerialView[]> {
      const ca = await prisma.trustedCertificate.findUnique({
        where: { tenantId_fingerprint: { tenantId, fingerprint: fingerprint.toLowerCase() } },
      });
      if (!ca) throw new NotFoundError(`Trusted certificate ${fingerprint} not found`, 'trustedCertificate/NotFound');
      let crl;
      try {
        crl = parseCrl(typeof body === 'string' ? body : new Uint8Array(body));
      } catch (err) {
        throw new UnprocessableError(`The body is not a CRL: ${(err as Error).message}`, 'revocation/InvalidCrl');
      }
      const issuer = parseCertificate(ca.certDer);
      // `openssl ca -gencrl` leaves the CRL number out when its config has no `crlnumber` file;
      // refusing such a CRL would only keep its revocations from applying.
      const check = verifyCrlSignature(crl, issuer, { requireCrlNumber: false });
      if (!check.ok) {
        throw new UnprocessableError(`The CRL is not valid for this CA: ${check.message}`, 'revocation/InvalidCrl');
      }
      const entries = crl.revoked.map((r) => ({
        serialHex: r.serialHex,
        issuerFingerprint: ca.fingerprint,
        revocationDate: r.revocationDate,
      }));
      if (entries.length) await upsertAll(tenantId, entries, 'CRL');
      const rows = await prisma.revokedSerial.findMany({
        where: { tenantId, issuerFingerprint: ca.fingerprint },
        orderBy: [{ creationTime: 'asc' }, { serialHex: 'asc' }],
      });
      return rows.map(toView);
    },
  };
}
export type RevocationService = ReturnType<typeof createRevocationService>;
