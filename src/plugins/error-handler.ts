import fp from 'fastify-plugin';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  isResponseSerializationError,
} from 'fastify-type-provider-zod';
import { isDatabaseUnavailable } from '../db/prisma-errors.js';
import { AppError, TooManyRequestsError } from '../errors.js';
import { createBurstLogger } from '../lib/logger.js';
import { VerifierUnavailableError } from '../verifier/verifier-types.js';

/**
 * Where an error body's `info` points: the API documentation at /docs, or, when DOCS_ENABLED=false
 * removed it, the OpenAPI document that comes with certgate.
 */
export function errorInfo(docs: boolean): string {
  return docs ? '/docs' : "certgate's openapi/openapi.json (/docs is disabled)";
}
const INFO = errorInfo(true);

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
export const errorHandlerPlugin = fp(async function errorHandler(app: FastifyInstance, opts: { info?: string }) {
  const info = opts.info ?? INFO;
  // A database outage fails every request alike: one line per burst, without a stack.
  const outage = createBurstLogger(app.log);
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const { status, body } = toHttp(err, info);
    if (status === 503) outage.warn(body.error, { error: body.error, reason: body.message }, 'service unavailable: requests answered 503');
    else if (status >= 500) req.log.error({ err }, 'request failed');
    if (status === 401) reply.header('www-authenticate', challengeFor(req.url));
    if (err instanceof TooManyRequestsError) reply.header('retry-after', String(err.retryAfterSeconds));
    return reply.status(status).send(body);
  });

  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send({
      error: 'general/NotFound',
      message: `No route ${req.method} ${req.url.split('?')[0]}`,
      info,
    } satisfies ErrorBody),
  );
});

/**
 * Fastify's `frameworkErrors`: errors its router raises before any route or hook runs (a path
 * whose percent-encoding does not decode, a path parameter over `maxParamLength`).
 */
export function frameworkErrorHandler(info = INFO) {
  return (err: FastifyError, _req: FastifyRequest, reply: FastifyReply): void => {
    const { status, body } = toHttp(err, info);
    void reply.status(status).send(body);
  };
}

/**
 * Node's `clientError`: the HTTP parser refused the request before Fastify saw it (a malformed
 * request line, headers over the size limit, a timeout). Fastify's default answers with its own
 * body; this one answers `{error, message, info}` and closes the connection, as Node does.
 */
export const clientErrorHandler = (info = INFO) => (err: NodeJS.ErrnoException & { bytesParsed?: number }, socket: Duplex): void => {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const { status, body } = clientErrorOf(err.code, info);
  if (socket.writable) {
    const text = JSON.stringify(body);
    socket.write(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
    );
  }
  socket.destroy();
};

function clientErrorOf(code: string | undefined, info: string): { status: number; body: ErrorBody } {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return {
        status: 431,
        body: { error: 'request/HeadersTooLarge', message: 'The request line and headers are larger than the server accepts', info },
      };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, body: { error: 'request/Timeout', message: 'The request was not received in time', info } };
    default:
      return {
        status: 400,
        body: {
          error: 'request/Malformed',
          message: `The request is not valid HTTP/1.1${code?.startsWith('HPE_') ? ` (${code.slice(4).toLowerCase().replaceAll('_', ' ')})` : ''}`,
          info,
        },
      };
  }
}

/** An `Expect` header other than `100-continue`: Node would answer 417 with no body. */
export const expectationFailed = (info = INFO) => (_req: http.IncomingMessage, res: http.ServerResponse): void => {
  const text = JSON.stringify({
    error: 'request/ExpectationFailed',
    message: 'Only "Expect: 100-continue" is supported',
    info,
  } satisfies ErrorBody);
  res.writeHead(417, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), connection: 'close' });
  res.end(text);
};

/** Verifier routes and `/metrics` take a bearer token; everything else HTTP Basic. */
function challengeFor(url: string): string {
  return url.startsWith('/verifier/') || url.startsWith('/metrics') ? 'Bearer realm="certgate"' : 'Basic realm="certgate"';
}

function toHttp(err: FastifyError, info: string): { status: number; body: ErrorBody } {
  if (err instanceof AppError) {
    return {
      status: err.statusCode,
      body: { error: err.code, message: err.message, info, ...(err.details ? { details: err.details } : {}) },
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
        info,
        details,
      },
    };
  }
  if (isResponseSerializationError(err)) {
    return internal(info);
  }
  const status = err.statusCode ?? 500;
  switch (err.code) {
    case 'FST_ERR_BAD_URL':
      return {
        status: 400,
        body: { error: 'request/BadUrl', message: 'The request path is not valid percent-encoded UTF-8', info },
      };
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return { status: 414, body: { error: 'request/UriTooLong', message: 'A path parameter is longer than the server accepts', info } };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, body: { error: 'request/BodyTooLarge', message: 'The request body is too large', info } };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return {
        status: 415,
        body: { error: 'request/UnsupportedMediaType', message: err.message, info },
      };
  }
  if (err instanceof VerifierUnavailableError) {
    // The trust state cannot be shown current (src/verifier/trust-state.ts): fail closed.
    return { status: 503, body: { error: 'service/Unavailable', message: 'The verifier store is unavailable', info } };
  }
  if (isDatabaseUnavailable(err)) {
    return { status: 503, body: { error: 'service/Unavailable', message: 'The database is not reachable', info } };
  }
  if (status >= 400 && status < 500) {
    // Fastify's own client errors (unparsable JSON, bad content length, ...): their messages name
    // the problem and carry no internals.
    return { status, body: { error: 'request/BadRequest', message: err.message, info } };
  }
  return internal(info);
}

function internal(info: string): { status: number; body: ErrorBody } {
  return { status: 500, body: { error: 'general/InternalError', message: 'Internal error', info } };
}
