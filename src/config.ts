import { z } from 'zod';
import path from 'node:path';
import { TRUST_WINDOW_MS } from './verifier/trust-state.js';

/** How long a database call may take unless configured (`DATABASE_STATEMENT_TIMEOUT_MS`, `DATABASE_ACQUIRE_TIMEOUT_MS`). */
export const DATABASE_TIMEOUT_DEFAULTS = { statementTimeoutMs: 3_000, acquireTimeoutMs: 3_000, counterTimeoutMs: 2_000 } as const;

const PORT = 'must be a port number 0-65535';
const port = z.coerce.number({ error: PORT }).int(PORT).min(0, PORT).max(65535, PORT);
const count = z.coerce.number().int().min(0);
/** `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`). */
const flag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'], { message: 'must be true or false' })
  .transform((v) => ['true', '1', 'yes', 'on'].includes(v));
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v));

/** The whole environment certgate reads, in one place. */
const configSchema = z
  .object({
    HTTP_HOST: z.string().min(1).default('0.0.0.0'),
    HTTP_PORT: port.default(8080),
    MQTT_TLS_HOST: z.string().min(1).default('0.0.0.0'),
    MQTT_TLS_PORT: port.default(8883),
    MQTT_TLS_CERT: optionalString,
    MQTT_TLS_KEY: optionalString,
    /** Listener processes sharing the MQTT port; unset: one per CPU this process may use. */
    MQTT_WORKERS: optionalString.pipe(
      z
        .string()
        .regex(/^\d+$/, 'must be a whole number of processes')
        .transform(Number)
        .pipe(z.number().int().min(1).max(256))
        .optional(),
    ),
    /** Accepted MQTT connections per listener process; 0: unlimited. */
    MQTT_MAX_CONNECTIONS: count.default(0),
    /** Accepted MQTT connections per tenant per listener process; 0: unlimited. */
    MQTT_MAX_CONNECTIONS_PER_TENANT: count.default(0),
    /** Largest MQTT packet accepted, in bytes (announced as Maximum Packet Size). */
    MQTT_MAX_PACKET_SIZE: z.coerce.number().int().min(128).max(268_435_455).default(1024 * 1024),
    /** QoS 1 and 2 messages in flight to one client (mosquitto's max_inflight_messages). */
    MQTT_MAX_INFLIGHT: z.coerce.number().int().min(1).max(65_535).default(20),
    /** QoS 1 and 2 messages queued per session beyond those in flight (mosquitto's max_queued_messages). */
    MQTT_MAX_QUEUED: z.coerce.number().int().min(0).default(1_000),
    /** QoS 2 messages from one client awaiting PUBREL at once (announced as Receive Maximum). */
    MQTT_RECEIVE_MAXIMUM: z.coerce.number().int().min(1).max(65_535).default(100),
    /** Subscriptions per session; 0: unlimited. */
    MQTT_MAX_SUBSCRIPTIONS: count.default(0),
    /** PUBLISH packets per second per connection (bursts of as many); 0: unlimited. */
    MQTT_PUBLISH_RATE: count.default(0),
    /** Longest keep alive granted, in seconds (announced as Server Keep Alive); 0: as the client asks. */
    MQTT_MAX_KEEPALIVE: z.coerce.number().int().min(0).max(65_535).default(0),
    /** Topic aliases a client may set (Topic Alias Maximum); 0 refuses them. */
    MQTT_TOPIC_ALIAS_MAXIMUM: z.coerce.number().int().min(0).max(65_535).default(10),
    /** Retained messages kept per tenant. */
    MQTT_MAX_RETAINED_PER_TENANT: z.coerce.number().int().min(0).default(100_000),
    /** Longest a disconnected persistent session is kept, in seconds. */
    MQTT_MAX_SESSION_EXPIRY: z.coerce.number().int().min(0).default(86_400),
    DATABASE_URL: optionalString.pipe(
      z
        .string()
        .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
        .optional(),
    ),
    /**
     * Longest a database statement may run: a frozen or cut-off database answers 503 within
     * about this (plus the wait for a connection), never hangs a request.
     */
    DATABASE_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(DATABASE_TIMEOUT_DEFAULTS.statementTimeoutMs),
    /**
     * Longest a request waits for a database connection while the database answers nothing: no
     * statement completes, no connection opens. While statements keep completing (a storm queued
     * behind the pool) it waits on, up to 10 s.
     */
    DATABASE_ACQUIRE_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(DATABASE_TIMEOUT_DEFAULTS.acquireTimeoutMs),
    /**
     * Longest the read of the change counter may take before a decision is unavailable (503,
     * CONNACK "server unavailable"): every decision reads it first (docs/trust-state.md).
     */
    DATABASE_COUNTER_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(DATABASE_TIMEOUT_DEFAULTS.counterTimeoutMs),
    /**
     * Auth events, and sightings, that may wait in memory for a database that is away (each kind,
     * per process); more are dropped and counted in certgate_records_dropped_total.
     */
    /**
     * How long a change counter read that found this process's trust caches current vouches for
     * them, in milliseconds: a decision begun within it after such a read is made without another.
     * A change is honoured everywhere from this long after its commit at the latest (usually
     * at once, by its notification). 0: every decision reads the counter first.
     */
    TRUST_WINDOW_MS: z.coerce.number().int().min(0).max(1_000).default(TRUST_WINDOW_MS),
    RECORDS_QUEUE_LIMIT: z.coerce.number().int().min(1).max(10_000_000).default(100_000),
    /** How long a stopping process waits for the database to take the records still waiting. */
    RECORDS_SHUTDOWN_WAIT_MS: z.coerce.number().int().min(0).max(600_000).default(5_000),
    DATA_DIR: z.string().min(1).default('.data'),
    MANAGEMENT_ADMIN_PASSWORD: optionalString.pipe(
      z.string().min(8, 'must be at least 8 characters').optional(),
    ),
    VERIFIER_TOKEN: optionalString.pipe(z.string().min(16, 'must be at least 16 characters').optional()),
    VERIFIER_URL: optionalString.pipe(z.url('must be an http(s) URL').optional()),
    /** The API's address as clients reach it (through a proxy, say): the base of `self`/`next`/`prev` links. */
    PUBLIC_URL: optionalString.pipe(
      z
        .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
        .refine((u) => {
          const url = URL.parse(u);
          return url === null || (url.search === '' && url.hash === '' && url.username === '' && url.password === '');
        }, 'must be an http(s) URL without query, fragment or credentials')
        .transform((u) => u.replace(/\/+$/, ''))
        .optional(),
    ),
    /** `certgate emqx sync`: EMQX's REST API (a node's dashboard listener, e.g. http://emqx1:18083). */
    EMQX_API_URL: optionalString.pipe(z.url('must be an http(s) URL').optional()),
    /** `certgate emqx sync`: an API key and its secret (EMQX's `api_key.bootstrap_file`). */
    EMQX_API_KEY: optionalString,
    EMQX_API_SECRET: optionalString,
    /** `certgate emqx sync`: the TLS listener whose CA file is kept to certgate's CA bundle. */
    EMQX_LISTENER_ID: z.string().regex(/^(ssl|wss):[A-Za-z0-9_-]+$/, 'must be `ssl:<name>` or `wss:<name>`').default('ssl:default'),
    /** `certgate vernemq sync`: VerneMQ's HTTP API (e.g. http://vernemq1:8888) and an API key. */
    VERNEMQ_API_URL: optionalString.pipe(z.url('must be an http(s) URL').optional()),
    VERNEMQ_API_KEY: optionalString,
    /** `certgate vernemq sync`: where the CA bundle is written for VerneMQ's `listener.ssl.cafile`. */
    VERNEMQ_CA_FILE: optionalString,
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** `auto`: readable lines on a terminal, JSON lines otherwise. */
    LOG_FORMAT: z.enum(['auto', 'pretty', 'json']).default('auto'),
    /** When set, `/metrics` answers only `Authorization: Bearer <METRICS_TOKEN>`. */
    METRICS_TOKEN: optionalString.pipe(z.string().min(16, 'must be at least 16 characters').optional()),
    METRICS_ENABLED: flag.default(true),
    /** `false` removes the Swagger UI and the OpenAPI document from the API. */
    DOCS_ENABLED: flag.default(true),
    BODY_LIMIT_BYTES: z.coerce.number().int().min(1024).default(1024 * 1024),
    AUTH_FAILURES_BEFORE_LOCKOUT: z.coerce.number().int().min(1).default(10),
  })
  .superRefine((c, ctx) => {
    if ((c.MQTT_TLS_CERT === undefined) !== (c.MQTT_TLS_KEY === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['MQTT_TLS_CERT'],
        message: 'MQTT_TLS_CERT and MQTT_TLS_KEY must be set together',
      });
    }
  });

export type Config = Readonly<z.output<typeof configSchema> & { dataDir: string }>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid environment:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment once; a bad environment lists every problem instead of the first. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = configSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => `${i.path.join('.') || '(environment)'}: ${problemOf(i)}`),
    );
  }
  return Object.freeze({ ...parsed.data, dataDir: path.resolve(parsed.data.DATA_DIR) });
}

/** An issue as an operator reads it: a value that is no number says so, without zod's wording. */
function problemOf(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type' && issue.expected === 'number' && issue.message.startsWith('Invalid input')) return 'must be a number';
  return issue.message;
}
