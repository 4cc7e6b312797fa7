/**
 * certgate's logs: pino with ISO 8601 times, one readable line per entry when stdout is a terminal
 * (pino-pretty, in this process) and one JSON object per line otherwise (a file, a container log,
 * a pipe); both written synchronously, so nothing is lost on exit.
 */
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type LogFormat = 'auto' | 'pretty' | 'json';

export interface LoggerSettings {
  LOG_LEVEL: pino.LevelWithSilent;
  LOG_FORMAT?: LogFormat;
}

export function createLogger(settings: LoggerSettings, stdoutIsTerminal = Boolean(process.stdout.isTTY)): Logger {
  const options: pino.LoggerOptions = {
    level: settings.LOG_LEVEL,
    base: { service: 'certgate' },
    timestamp: pino.stdTimeFunctions.isoTime,
    hooks: {
      // Fastify writes "Server listening at <url>" once per interface and has no setting to
      // leave it out; certgate says where the API listens in its own "REST API listening" line.
      logMethod(args, method) {
        if (typeof args[0] === 'string' && args[0].startsWith('Server listening at ')) return;
        method.apply(this, args);
      },
    },
  };
  const format = settings.LOG_FORMAT ?? 'auto';
  if (format === 'pretty' || (format === 'auto' && stdoutIsTerminal)) {
    return pino(
      options,
      pretty({
        sync: true,
        colorize: stdoutIsTerminal,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname,service,method,url,statusCode,responseTimeMs',
        singleLine: true,
        messageFormat: requestMessage,
      }),
    );
  }
  // Written synchronously, as the readable lines are: in order with what certgate prints on
  // stdout itself (the secrets), and complete when the process exits.
  return pino(options, pino.destination({ dest: 1, sync: true }));
}

/** What a readable request line shows after the level and time, besides the other fields. */
const REQUEST_FIELDS = [
  ['tenantId', 'tenant'],
  ['userName', 'user'],
  ['deviceName', 'device'],
  ['result', 'result'],
  ['reason', 'reason'],
] as const;

/**
 * The message of a readable line: for an HTTP request, what happened in one glance
 * (`POST /verifier/v1/authenticate 200 4.1ms tenant=acme device=d1`); other lines as logged, with
 * the time taken when they have one.
 */
export function requestMessage(log: Record<string, unknown>, messageKey: string): string {
  const msg = String(log[messageKey] ?? '');
  if (typeof log.method !== 'string' || typeof log.url !== 'string') {
    return log.responseTimeMs === undefined ? msg : `${msg} (${String(log.responseTimeMs)}ms)`;
  }
  const parts: string[] = [log.method, log.url];
  if (log.statusCode !== undefined) parts.push(String(log.statusCode));
  if (log.responseTimeMs !== undefined) parts.push(`${String(log.responseTimeMs)}ms`);
  for (const [field, label] of REQUEST_FIELDS) if (log[field] !== undefined) parts.push(`${label}=${String(log[field])}`);
  return msg === 'request' ? parts.join(' ') : `${msg}: ${parts.join(' ')}`;
}

/**
 * An expected failure (the database unreachable, a peer gone) as one short field for a log line:
 * its code and message, without the stack an operator cannot act on.
 */
export function reasonOf(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  const message = typeof e?.message === 'string' ? e.message.split('\n')[0]! : String(err);
  return typeof e?.code === 'string' && !message.includes(e.code) ? `${e.code}: ${message}` : message;
}

/** What a burst logger writes to: a pino logger or anything with the same two methods. */
export interface BurstTarget {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/**
 * Logs an expected condition (the database unreachable, clients going away) once per burst: the
 * first occurrence of a key is written, later ones within `windowMs` are counted, and when the
 * window ends one line says how many more there were. No stacks: callers pass what an operator
 * needs (a code, a message).
 */
export function createBurstLogger(target: BurstTarget, windowMs = 10_000) {
  const bursts = new Map<string, { suppressed: number; timer: NodeJS.Timeout; level: 'warn' | 'info'; msg: string }>();
  const write = (level: 'warn' | 'info', key: string, obj: object, msg: string): void => {
    const burst = bursts.get(key);
    if (burst) {
      burst.suppressed++;
      return;
    }
    target[level](obj, msg);
    const timer = setTimeout(() => {
      const ended = bursts.get(key);
      bursts.delete(key);
      if (ended && ended.suppressed > 0) {
        target[ended.level]({ repeated: ended.suppressed, withinSeconds: windowMs / 1000 }, `${ended.msg} (repeated)`);
      }
    }, windowMs);
    timer.unref();
    bursts.set(key, { suppressed: 0, timer, level, msg });
  };
  return {
    warn: (key: string, obj: object, msg: string) => write('warn', key, obj, msg),
    info: (key: string, obj: object, msg: string) => write('info', key, obj, msg),
    /** Writes the counts of open bursts now (at shutdown). */
    flush(): void {
      for (const [key, burst] of bursts) {
        clearTimeout(burst.timer);
        bursts.delete(key);
        if (burst.suppressed > 0) target[burst.level]({ repeated: burst.suppressed }, `${burst.msg} (repeated)`);
      }
    },
  };
}
export type BurstLogger = ReturnType<typeof createBurstLogger>;
