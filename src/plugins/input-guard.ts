import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequestError } from '../errors.js';

/**
 * PostgreSQL text cannot hold U+0000 (NUL): a string carrying one fails in the database, after
 * the request was accepted. No text certgate stores has a use for it, so every decoded value of
 * a request (path parameters, query, JSON body, keys included) is checked here, once, before any
 * route validates it; the answer is a 400 naming the field. Credentials are checked where they
 * are decoded, in the auth plugin.
 */
export const inputGuardPlugin = fp(async function inputGuard(app: FastifyInstance) {
  app.addHook('preValidation', (req: FastifyRequest, _reply, done) => {
    const where =
      nulIn(req.params, 'path') ?? nulIn(req.query, 'query') ?? (Buffer.isBuffer(req.body) ? undefined : nulIn(req.body, 'body'));
    if (where !== undefined) {
      done(
        new BadRequestError(`${where} contains U+0000 (NUL), which no text field accepts`, 'request/InvalidCharacter', [
          { field: where, message: 'contains U+0000 (NUL)' },
        ]),
      );
      return;
    }
    done();
  });
});

/** The path (`body.items.0.name`) of the first string, or key, holding U+0000; undefined if none. */
export function nulIn(value: unknown, root: string): string | undefined {
  // Iterative, so a deeply nested body cannot overflow the stack.
  const stack: Array<[unknown, string]> = [[value, root]];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return path;
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}.${i}`]);
    } else if (v !== null && typeof v === 'object' && !Buffer.isBuffer(v)) {
      for (const [k, x] of Object.entries(v)) {
        if (k.includes('\u0000')) return `${path} (a key)`;
        stack.push([x, `${path}.${k}`]);
      }
    }
  }
  return undefined;
}
