import { z } from 'zod';
import { normalizeSerialHex as normalizeHex } from '../../pki/crl.js';
import { isoDateTimeOrDate } from '../../lib/http-schemas.js';

/** Serials are compared as hex without case, leading zeros or `:` separators. */
export function normalizeSerialHex(hex: string): string {
  return normalizeHex(hex.replace(/[:\s]/g, ''));
}

const hexSerial = z
  .string()
  .trim()
  .min(1)
  .regex(/^(0x)?[0-9a-fA-F:\s]+$/, 'must be hexadecimal');
/** In a path: a serial longer than any held one is simply not found. */
const serialHex = hexSerial.max(130);
/**
 * In a body: any length the body limit lets through is read, so that a serial of more than 20
 * octets (RFC 5280 4.1.2.2) gets its own 422 rather than a 400 about the string.
 */
const serialHexInBody = hexSerial.describe('Hexadecimal, at most 20 octets (RFC 5280 4.1.2.2); `:` and white space ignored');

export const revokedSerialSchema = z
  .object({
    serialNumberInHex: z.string(),
    revocationDate: z.string(),
    issuerFingerprint: z.string().optional(),
    source: z.enum(['API', 'CRL']),
  })
  .meta({ id: 'RevokedSerial' });

export const revocationListSchema = z.object({ crls: z.array(revokedSerialSchema) });

export const putCrlBody = z.strictObject({
  crls: z
    .array(
      z.strictObject({
        serialNumberInHex: serialHexInBody,
        revocationDate: isoDateTimeOrDate,
        issuerFingerprint: z.string().regex(/^[0-9a-fA-F]{40}$/, 'must be a SHA-1 fingerprint').optional(),
      }),
    )
    .min(1)
    .max(10_000),
});

export const revocationParams = z.strictObject({ tenantId: z.string().min(1).max(64) });
export const serialParams = revocationParams.extend({ serialNumberInHex: serialHex });
export const crlImportParams = revocationParams.extend({ fingerprint: z.string().min(1).max(128) });
export const liftQuery = z.object({
  issuerFingerprint: z.string().regex(/^[0-9a-fA-F]{40}$/).optional().describe('Lift only the hold for this CA'),
});

export type RevokedSerialView = z.output<typeof revokedSerialSchema>;
export type PutCrlInput = z.output<typeof putCrlBody>;
