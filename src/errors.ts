/**
 * Typed errors thrown by services. The error-handler plugin is the one place that turns them
 * into HTTP: `{error: "<area>/<Reason>", message, info, details?}`.
 */
export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class BadRequestError extends AppError {
  constructor(message: string, code = 'request/BadRequest', details?: unknown) {
    super(400, code, message, details);
  }
}

export class UnauthorizedError extends AppError {
  constructor(message = 'Missing or invalid credentials', code = 'security/Unauthorized') {
    super(401, code, message);
  }
}

export class ForbiddenError extends AppError {
  constructor(message = 'Access is denied', code = 'security/Forbidden') {
    super(403, code, message);
  }
}

export class NotFoundError extends AppError {
  constructor(message: string, code = 'resource/NotFound') {
    super(404, code, message);
  }
}

export class ConflictError extends AppError {
  constructor(message: string, code = 'resource/Conflict') {
    super(409, code, message);
  }
}

export class UnprocessableError extends AppError {
  constructor(message: string, code = 'validation/Unprocessable', details?: unknown) {
    super(422, code, message, details);
  }
}

export class TooManyRequestsError extends AppError {
  constructor(message: string, readonly retryAfterSeconds: number) {
    super(429, 'security/TooManyRequests', message);
  }
}

export class ServiceUnavailableError extends AppError {
  constructor(message = 'The database is not reachable', code = 'service/Unavailable') {
    super(503, code, message);
  }
}
