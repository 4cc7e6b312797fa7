import fp from 'fastify-plugin';
import type { FastifyError, FastifyInstance } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  isResponseSerializationError,
} from 'fastify-type-provider-zod';
import { isDatabaseUnavailable } from '../db/prisma-errors.js';
import { AppError, TooManyRequestsError } from '../errors.js';

const INFO = '/docs';

interface ErrorBody {
  error: string;
  message: string;
  info: string;
  details?: unknown;
}

/**
 * The one place HTTP status codes are chosen for failures. Nothing leaves
 * as a 500 with a stack or an internal message.
 */
export const errorHandlerPlugin = fp(async function errorHandler(app: FastifyInstance) {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const { status, body } = toHttp(err);
    if (status >= 500) req.log.error({ err }, 'request failed');
    if (err instanceof TooManyRequestsError) reply.header('retry-after', String(err.retryAfterSeconds));
    return reply.status(status).send(body);
  });

  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send({
      error: 'general/NotFound',
      message: `No route ${req.method} ${req.url.split('?')[0]}`,
      info: INFO,
    } satisfies ErrorBody),
  );
});

function toHttp(err: FastifyError): { status: number; body: ErrorBody } {
  if (err instanceof AppError) {
    return {
      status: err.statusCode,
      body: { error: err.code, message: err.message, info: INFO, ...(err.details ? { details: err.details } : {}) },
    };
  }
  if (hasZodFastifySchemaValidationErrors(err)) {
    const details = err.validation.map((v) => ({
      field: [err.validationContext, v.instancePath.replace(/^\//, '').replaceAll('/', '.')]
        .filter(Boolean)
        .join('.'),
      message: v.message,
      ...(v.params && 'keys' in v.params ? { unknownFields: v.params.keys } : {}),
    }));
    return {
      status: 400,
      body: {
        error: 'validation/InvalidRequest',
        message: details.map((d) => `${d.field || err.validationContext}: ${d.message}`).join('; '),
        info: INFO,
        details,
      },
    };
  }
  if (isResponseSerializationError(err)) {
    return internal();
  }
  const status = err.statusCode ?? 500;
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, body: { error: 'request/BodyTooLarge', message: 'The request body is too large', info: INFO } };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return {
        status: 415,
        body: { error: 'request/UnsupportedMediaType', message: err.message, info: INFO },
      };
  }
  if (isDatabaseUnavailable(err)) {
    return { status: 503, body: { error: 'service/Unavailable', message: 'The database is not reachable', info: INFO } };
  }
  if (status >= 400 && status < 500) {
    // Fastify's own client errors (unparsable JSON, bad content length, ...): their messages name
    // the problem and carry no internals.
    return { status, body: { error: 'request/BadRequest', message: err.message, info: INFO } };
  }
  return internal();
}

function internal(): { status: number; body: ErrorBody } {
  return { status: 500, body: { error: 'general/InternalError', message: 'Internal error', info: INFO } };
}
