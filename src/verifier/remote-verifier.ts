/**
 * The verifier over HTTP, for a listener running apart from the API (`certgate mqtt` with
 * VERIFIER_URL and VERIFIER_TOKEN): `POST {url}/verifier/v1/authenticate`.
 *
 * It fails closed: anything but a well-formed 200 (or a 400, which is about the chain the device
 * sent) throws VerifierUnavailableError, which the listener answers with "server unavailable".
 * Node's fetch keeps connections to the verifier alive between calls.
 */
import { decisionSchema } from './verifier-schemas.js';
import { VerifierUnavailableError, type AuthenticateRequest, type Decision, type Verifier } from './verifier-types.js';

export interface RemoteVerifierOptions {
  /** Base URL of the certgate API, e.g. `http://certgate-api:8080`. */
  url: string;
  token: string;
  /** Per call, connection included. Default 5 s. */
  timeoutMs?: number;
  /** For tests and custom agents; default the global fetch. */
  fetch?: typeof fetch;
}

export function createRemoteVerifier(opts: RemoteVerifierOptions): Verifier {
  const endpoint = new URL('verifier/v1/authenticate', opts.url.endsWith('/') ? opts.url : `${opts.url}/`).toString();
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const doFetch = opts.fetch ?? fetch;
  const headers = {
    authorization: `Bearer ${opts.token}`,
    'content-type': 'application/json',
    accept: 'application/json',
  };

  async function ask(url: string, request: AuthenticateRequest): Promise<Decision> {
    let res: Response;
    try {
      res = await doFetch(url, {
        method: 'POST',
        headers,
        body: JSON.stringify(request),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const e = err as Error;
      const why = e.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (e.cause as Error | undefined)?.message ?? e.message;
      throw new VerifierUnavailableError(`verifier unreachable: ${why}`);
    }
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      body = undefined;
    }
    if (res.status === 200) {
      const parsed = decisionSchema.safeParse(body);
      if (!parsed.success) throw new VerifierUnavailableError('verifier answered 200 with an unexpected body');
      return parsed.data as Decision;
    }
    if (res.status === 400) {
      // The request is ours and well-formed, so a 400 is about what the device presented.
      const message = (body as { message?: unknown } | undefined)?.message;
      return {
        result: 'deny',
        reason: 'MALFORMED_CERTIFICATE',
        message: typeof message === 'string' ? message : 'the verifier could not read the presented chain',
      };
    }
    // 401 (wrong token), 404 (wrong URL), 503 (store down) and the rest: fail closed.
    throw new VerifierUnavailableError(`verifier answered HTTP ${res.status}`);
  }

  return {
    authenticate: (request) => ask(endpoint, request),
    // The API decides without side effects: a session re-checked registers and records nothing.
    recheck: (request) => ask(`${endpoint}?recheck=true`, request),
  };
}

export interface TokenCheck {
  /** Why the listener must not start (a refused token, no certgate API at the URL). */
  problem?: string;
  /** Why its devices will get "server unavailable" until the API is reachable. */
  warning?: string;
}

/**
 * One call a standalone listener makes at start: `GET /verifier/v1/token`, which answers 200 naming
 * the certgate verifier when the token is accepted and 401 when it is not. Any other answer comes
 * from something that is not a certgate verifier (another web server, a proxy's error page) and
 * stops the start; only no answer at all, or a certgate answering 503, lets the listener start and
 * wait for it.
 */
export async function checkVerifierToken(opts: Pick<RemoteVerifierOptions, 'url' | 'token' | 'fetch'> & { timeoutMs?: number }): Promise<TokenCheck> {
  const endpoint = new URL('verifier/v1/token', opts.url.endsWith('/') ? opts.url : `${opts.url}/`).toString();
  let res: Response;
  let body: unknown;
  try {
    res = await (opts.fetch ?? fetch)(endpoint, {
      headers: { authorization: `Bearer ${opts.token}`, accept: 'application/json' },
      signal: AbortSignal.timeout(opts.timeoutMs ?? 5_000),
    });
    body = await res.json().catch(() => undefined);
  } catch (err) {
    const e = err as Error;
    const why = e.name === 'TimeoutError' ? 'no answer' : ((e.cause as Error | undefined)?.message ?? e.message);
    return { warning: `the verifier at VERIFIER_URL is not reachable (${why}): devices get "server unavailable" until it is` };
  }
  const fields = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  const certgateError = ['error', 'message', 'info'].every((k) => typeof fields[k] === 'string');
  if (res.status === 200 && fields.service === 'certgate-verifier') return {};
  if (res.status === 401 && certgateError) {
    return { problem: 'the verifier refused VERIFIER_TOKEN (401): set VERIFIER_TOKEN to the API\'s token (its VERIFIER_TOKEN, or the one it printed on its first start)' };
  }
  if (res.status === 503 && certgateError) {
    return { warning: `the verifier at VERIFIER_URL answered 503 (${String(fields.message)}): devices get "server unavailable" until it recovers` };
  }
  return { problem: `${endpoint} is no certgate verifier (it answered ${res.status}): set VERIFIER_URL to the certgate API's base URL (e.g. http://api-host:8080)` };
}
