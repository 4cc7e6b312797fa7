import crypto from 'node:crypto';
import type { TrustedCertificate } from '../../generated/prisma/client.js';
import type { PrismaClient } from '../../db/prisma.js';
import { isUniqueViolation } from '../../db/prisma-errors.js';
import type { ChangeEvent, ChangePublisher } from '../../db/change-feed.js';
import { BadRequestError, ConflictError, NotFoundError, UnprocessableError } from '../../errors.js';
import { isUuid } from '../../lib/ids.js';
import { checkKeyStrength, checkTrustedCaRules } from '../../pki/ca-rules.js';
import { verifyProofOfPossession } from '../../pki/possession.js';
import { CertificateParseError, parseCertificate, toPemBody, type ParsedCertificate } from '../../pki/certificate.js';
import { nameHash } from '../../pki/name-hash.js';
import type {
  CreateTrustedCertificateInput,
  TrustedCertificateView,
  UpdateTrustedCertificateInput,
} from './trusted-certificates-schemas.js';

export function toTrustedCertificateView(c: TrustedCertificate, now = new Date()): TrustedCertificateView {
  const codeUsable = c.popCode && c.popCodeUsableUntil && c.popCodeUsableUntil > now;
  return {
    fingerprint: c.fingerprint,
    name: c.name,
    status: c.status,
    autoRegistrationEnabled: c.autoRegistrationEnabled,
    certInPemFormat: toPemBody(c.certDer),
    serialNumber: c.serialNumber,
    algorithmName: c.algorithmName,
    version: c.version,
    issuer: c.issuer,
    subject: c.subject,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    proofOfPossessionValid: c.popValid,
    ...(codeUsable
      ? {
          proofOfPossessionUnsignedVerificationCode: c.popCode!,
          proofOfPossessionVerificationCodeUsableUntil: c.popCodeUsableUntil!.toISOString(),
        }
      : {}),
    ...(c.deviceProfileId ? { deviceProfileId: c.deviceProfileId } : {}),
    tenantCertificateAuthority: false,
  };
}

/** Parses an uploaded CA and applies the upload rules for trusted certificates; every problem is a 422. */
export function parseTrustedCa(pem: string, now: Date, label = 'certInPemFormat'): ParsedCertificate {
  let cert: ParsedCertificate;
  try {
    cert = parseCertificate(pem);
  } catch (err) {
    const reason = err instanceof CertificateParseError ? err.message : 'unreadable';
    throw new UnprocessableError(`${label} is not one X.509 certificate: ${reason}`, 'trustedCertificate/InvalidCertificate');
  }
  // The subject's CN becomes the certificate's name when none is given, and PostgreSQL text
  // cannot hold U+0000: a name carrying one is refused here rather than failing the write.
  if (cert.subjectName.rdns.some((rdn) => rdn.some((a) => a.value?.includes('\u0000')))) {
    throw new UnprocessableError(
      `${label} cannot be trusted: its subject contains U+0000 (NUL), which no name may hold`,
      'trustedCertificate/NotAcceptable',
    );
  }
  const problems = checkTrustedCaRules(cert, now);
  if (problems.length > 0) {
    throw new UnprocessableError(
      `${label} cannot be trusted: ${problems.map((p) => p.message).join('; ')}`,
      'trustedCertificate/NotAcceptable',
      problems,
    );
  }
  return cert;
}

const POP_CODE_LIFETIME_MS = 10 * 60 * 1000;

const notFound = (fp: string) => new NotFoundError(`Trusted certificate ${fp} not found`, 'trustedCertificate/NotFound');

export interface TrustedCertificatesServiceDeps {
  prisma: Pick<PrismaClient, '$transaction' | 'trustedCertificate' | 'deviceProfile'>;
  publisher: ChangePublisher;
  clock?: () => Date;
}

export function createTrustedCertificatesService({ prisma, publisher, clock = () => new Date() }: TrustedCertificatesServiceDeps) {
  async function assertProfile(tenantId: string, id: string | null | undefined): Promise<void> {
    if (id === undefined || id === null) return;
    const found = isUuid(id) ? await prisma.deviceProfile.findFirst({ where: { tenantId, id }, select: { id: true } }) : null;
    if (!found) throw new UnprocessableError(`Device profile ${id} does not exist in this tenant`, 'trustedCertificate/UnknownProfile');
  }

  function rowData(tenantId: string, input: CreateTrustedCertificateInput, cert: ParsedCertificate) {
    return {
      tenantId,
      fingerprint: cert.sha1,
      sha256: cert.sha256,
      subjectHash: nameHash(cert.subjectName),
      name: input.name ?? (cert.commonName || cert.sha1),
      status: input.status,
      autoRegistrationEnabled: input.autoRegistrationEnabled ?? false,
      certDer: Buffer.from(cert.der),
      serialNumber: cert.serialNumberHex,
      algorithmName: cert.algorithmName,
      version: cert.version,
      issuer: cert.issuer,
      subject: cert.subject,
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
      deviceProfileId: input.deviceProfileId ?? null,
    };
  }

  const duplicate = (fp: string) =>
    new ConflictError(`A trusted certificate with fingerprint ${fp} already exists in this tenant`, 'trustedCertificate/Duplicate');

  async function find(tenantId: string, fingerprint: string): Promise<TrustedCertificate> {
    const c = await prisma.trustedCertificate.findUnique({
      where: { tenantId_fingerprint: { tenantId, fingerprint: fingerprint.toLowerCase() } },
    });
    if (!c) throw notFound(fingerprint);
    return c;
  }

  const invalidate = (tenantId: string): ChangeEvent => ({ type: 'invalidate', tenantId, what: 'trusted-certificates' });

  return {
    find,

    async create(tenantId: string, input: CreateTrustedCertificateInput): Promise<TrustedCertificateView> {
      const cert = parseTrustedCa(input.certInPemFormat, clock());
      await assertProfile(tenantId, input.deviceProfileId);
      try {
        const row = await prisma.$transaction(async (tx) => {
          const created = await tx.trustedCertificate.create({ data: rowData(tenantId, input, cert) });
          await publisher.publish([invalidate(tenantId)], tx);
          return created;
        });
        return toTrustedCertificateView(row, clock());
      } catch (err) {
        if (isUniqueViolation(err)) throw duplicate(cert.sha1);
        throw err;
      }
    },

    /** All or nothing: the first invalid or duplicate certificate rejects the whole request. */
    async createMany(tenantId: string, inputs: CreateTrustedCertificateInput[]): Promise<TrustedCertificateView[]> {
      const now = clock();
      const parsed = inputs.map((input, i) => parseTrustedCa(input.certInPemFormat, now, `certificates[${i}].certInPemFormat`));
      const seen = new Set<string>();
      for (const c of parsed) {
        if (seen.has(c.sha1)) throw duplicate(c.sha1);
        seen.add(c.sha1);
      }
      for (const input of inputs) await assertProfile(tenantId, input.deviceProfileId);
      try {
        const rows = await prisma.$transaction(async (tx) => {
          const out: TrustedCertificate[] = [];
          for (let i = 0; i < inputs.length; i++) {
            out.push(await tx.trustedCertificate.create({ data: rowData(tenantId, inputs[i]!, parsed[i]!) }));
          }
          await publisher.publish([invalidate(tenantId)], tx);
          return out;
        });
        return rows.map((r) => toTrustedCertificateView(r, now));
      } catch (err) {
        if (isUniqueViolation(err)) {
          const existing = await prisma.trustedCertificate.findFirst({
            where: { tenantId, fingerprint: { in: parsed.map((p) => p.sha1) } },
            select: { fingerprint: true },
          });
          throw duplicate(existing?.fingerprint ?? parsed[0]!.sha1);
        }
        throw err;
      }
    },

    async list(tenantId: string, skip: number, take: number, withTotal: boolean) {
      const where = { tenantId };
      const [items, total] = await Promise.all([
        prisma.trustedCertificate.findMany({ where, orderBy: [{ creationTime: 'asc' }, { fingerprint: 'asc' }], skip, take }),
        withTotal ? prisma.trustedCertificate.count({ where }) : Promise.resolve(undefined),
      ]);
      const now = clock();
      return { items: items.map((c) => toTrustedCertificateView(c, now)), total };
    },

    async get(tenantId: string, fingerprint: string): Promise<TrustedCertificateView> {
      return toTrustedCertificateView(await find(tenantId, fingerprint), clock());
    },

    async update(tenantId: string, fingerprint: string, input: UpdateTrustedCertificateInput): Promise<TrustedCertificateView> {
      const before = await find(tenantId, fingerprint);
      await assertProfile(tenantId, input.deviceProfileId);
      const row = await prisma.$transaction(async (tx) => {
        // The status right before this write, under its row lock: one read before the transaction
        // could miss an enable by another request in between, and with it the sessions to close.
        const [locked] = await tx.$queryRaw<Array<{ status: string }>>`SELECT status::text AS status FROM "TrustedCertificate" WHERE id = ${before.id}::uuid FOR UPDATE`;
        const updated = await tx.trustedCertificate.update({
          where: { id: before.id },
          data: {
            name: input.name,
            status: input.status,
            autoRegistrationEnabled: input.autoRegistrationEnabled,
            deviceProfileId: input.deviceProfileId,
          },
        });
        const disabled = (locked?.status ?? before.status) === 'ENABLED' && updated.status === 'DISABLED';
        await publisher.publish(
          [
            invalidate(tenantId),
            ...(disabled
              ? [{ type: 'session-drop' as const, change: { kind: 'trusted-certificate' as const, tenantId, fingerprint: updated.fingerprint } }]
              : []),
          ],
          tx,
        );
        return updated;
      });
      return toTrustedCertificateView(row, clock());
    },

    /** Proof of possession, step 1: a fresh code the CA key must sign, usable for ten minutes. */
    async createVerificationCode(tenantId: string, fingerprint: string): Promise<TrustedCertificateView> {
      const c = await find(tenantId, fingerprint);
      const now = clock();
      const row = await prisma.trustedCertificate.update({
        where: { id: c.id },
        data: { popCode: crypto.randomBytes(24).toString('base64url'), popCodeUsableUntil: new Date(now.getTime() + POP_CODE_LIFETIME_MS) },
      });
      return toTrustedCertificateView(row, now);
    },

    /**
     * Proof of possession, step 2: the base64 SHA-256 signature of the code by the CA's key, as
     * `openssl dgst -sha256 -sign ca.key` makes it. A wrong signature or an expired code is a 400.
     */
    async verifyProofOfPossession(tenantId: string, fingerprint: string, signedCode: string): Promise<TrustedCertificateView> {
      const c = await find(tenantId, fingerprint);
      const now = clock();
      if (!c.popCode || !c.popCodeUsableUntil || c.popCodeUsableUntil <= now) {
        throw new BadRequestError('No verification code is usable; request a new one', 'trustedCertificate/VerificationCodeExpired');
      }
      const cert = parseCertificate(c.certDer);
      const weak = checkKeyStrength(cert.publicKey);
      if (weak) {
        throw new UnprocessableError(`The certificate's key cannot prove possession: ${weak.message}`, 'trustedCertificate/WeakKey');
      }
      const valid = verifyProofOfPossession(cert, c.popCode, signedCode);
      if (!valid) {
        throw new BadRequestError('The signature does not verify with the certificate\'s public key', 'trustedCertificate/ProofOfPossessionInvalid');
      }
      // Possession decides which tenant a CA shared by several tenants serves: a change to trust.
      const row = await prisma.$transaction(async (tx) => {
        const updated = await tx.trustedCertificate.update({
          where: { id: c.id },
          data: { popValid: true, popCode: null, popCodeUsableUntil: null },
        });
        await publisher.publish([invalidate(tenantId)], tx);
        return updated;
      });
      return toTrustedCertificateView(row, now);
    },

    async remove(tenantId: string, fingerprint: string): Promise<void> {
      const c = await find(tenantId, fingerprint);
      await prisma.$transaction(async (tx) => {
        await tx.trustedCertificate.delete({ where: { id: c.id } });
        await publisher.publish(
          [invalidate(tenantId), { type: 'session-drop', change: { kind: 'trusted-certificate', tenantId, fingerprint: c.fingerprint } }],
          tx,
        );
      });
    },
  };
}
export type TrustedCertificatesService = ReturnType<typeof createTrustedCertificatesService>;
