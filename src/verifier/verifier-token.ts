/**
 * The verifier token, checked the same way on every verifier route. Brokers send it as a bearer
 * token (EMQX: a header in the authenticator's and authorizer's config) or as the password of HTTP
 * Basic (VerneMQ's webhooks send no header of their own, only credentials written into the
 * endpoint URL, `http://user:TOKEN@host/...`); the user name is not looked at.
 */
import crypto from 'node:crypto';
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { UnauthorizedError } from '../errors.js';

function presentedToken(header: string | undefined): string {
  if (!header) return '';
  if (header.startsWith('Bearer ')) return header.slice(7).trim();
  if (header.startsWith('Basic ')) {
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon < 0 ? '' : decoded.slice(colon + 1);
  }
  return '';
}

/** Constant-time comparison of the presented token's SHA-256 with the configured one. */
export function checkVerifierToken(req: FastifyRequest, expectedSha256: Buffer): void {
  const token = presentedToken(req.headers.authorization);
  const actual = crypto.hash('sha256', token, 'buffer');
  if (!token || actual.length !== expectedSha256.length || !crypto.timingSafeEqual(actual, expectedSha256)) {
    throw new UnauthorizedError('A valid verifier token is required (Bearer, or the password of HTTP Basic)', 'verifier/Unauthorized');
  }
}

/** An `onRequest` hook for a verifier route. */
export function verifierTokenHook(tokenSha256Hex: string) {
  const expected = Buffer.from(tokenSha256Hex, 'hex');
  return (req: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
    try {
      checkVerifierToken(req, expected);
    } catch (err) {
      return done(err as Error);
    }
    done();
  };
}
