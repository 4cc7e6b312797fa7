import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { PrismaClient } from './db/prisma.js';
import type { ChangeFeed, ChangePublisher } from './db/change-feed.js';
import { clientErrorHandler, errorHandlerPlugin, errorInfo, expectationFailed, frameworkErrorHandler } from './plugins/error-handler.js';
import { inputGuardPlugin } from './plugins/input-guard.js';
import { authPlugin } from './plugins/auth.js';
import type { Metrics } from './plugins/metrics.js';
import { createBurstLogger } from './lib/logger.js';
import { healthRouter } from './modules/health/health-router.js';
import { tenantsRouter } from './modules/tenants/tenants-router.js';
import { createTenantsRepository } from './modules/tenants/tenants-repository.js';
import { createTenantsService } from './modules/tenants/tenants-service.js';
import { usersRouter } from './modules/users/users-router.js';
import { deviceProfilesRouter } from './modules/device-profiles/device-profiles-router.js';
import { createDeviceProfilesService } from './modules/device-profiles/device-profiles-service.js';
import { devicesRouter } from './modules/devices/devices-router.js';
import { createDevicesService } from './modules/devices/devices-service.js';
import { revocationRouter } from './modules/revocation/revocation-router.js';
import { createRevocationService } from './modules/revocation/revocation-service.js';
import { authEventsRouter } from './modules/auth-events/auth-events-router.js';
import type { CertgateVerifier } from './verifier/verifier-service.js';
import { createVerifierRuntime, type VerifierRuntime } from './verifier/runtime.js';
import { verifierRouter } from './verifier/verifier-router.js';
import type { RecordQueueOptions } from './verifier/records-queue.js';
import { explainRouter } from './verifier/explain-router.js';
import { clusterRouter } from './cluster/cluster-router.js';
import { createClusterRepository } from './cluster/cluster-repository.js';
import { createClusterService } from './cluster/cluster-service.js';
import { trustedCertificatesRouter } from './modules/trusted-certificates/trusted-certificates-router.js';
import { createTrustedCertificatesService } from './modules/trusted-certificates/trusted-certificates-service.js';
import { createUsersService } from './modules/users/users-service.js';

export interface AppDeps {
  prisma: PrismaClient;
  /** Announces changes to other processes (PostgreSQL NOTIFY); by default through `prisma`. */
  publisher?: ChangePublisher;
  /** Changes announced by any process, this one included. */
  changeFeed?: Pick<ChangeFeed, 'subscribe' | 'onNotice' | 'onResync' | 'readCounter' | 'connected'>;
  /** SHA-256 (hex) of the verifier bearer token. */
  verifierTokenSha256: string;
  metrics: Metrics;
  readiness: () => Promise<void>;
  logger?: Logger | boolean;
  bodyLimit?: number;
  authFailuresBeforeLockout?: number;
  /** PUBLIC_URL: the base of `self`, `next` and `prev` links; unset, they use the request's Host when it is valid. */
  publicUrl?: string;
  /** How many records (auth events, sightings) may wait for the database, and how long closing waits for them. */
  records?: RecordQueueOptions;
  /** How long a change counter read that found the caches current vouches for them. */
  trustWindowMs?: number;
  /** How long reading the change counter may take before a decision is unavailable. */
  counterTimeoutMs?: number;
  /** `false` leaves out the Swagger UI (`/docs`) and the OpenAPI document (`/docs/json`). */
  docs?: boolean;
  /** When set, `/metrics` needs `Authorization: Bearer <metricsToken>`. */
  metricsToken?: string;
  /** `false` leaves out `/metrics`. */
  metricsEnabled?: boolean;
}

export const API_VERSION = '1.0.0';

declare module 'fastify' {
  interface FastifyInstance {
    /** The in-process verifier, for a co-located MQTT listener. */
    verifier: CertgateVerifier;
    /** PUBLIC_URL without a trailing slash, when configured. */
    publicUrl: string | undefined;
    /** The verifier's runtime: a co-located listener re-checks its sessions when changes were missed. */
    verifierRuntime: VerifierRuntime;
  }
  interface FastifyRequest {
    /** What a route adds to the request's log line (the verifier: tenant, device, result, reason). */
    logFields?: Record<string, unknown>;
  }
}

/**
 * Routes called all the time, whose lines are written at debug: probes and scrapers every few
 * seconds, a standalone listener's token check when it starts, and a clustered broker on every
 * publish and subscribe (authorize, its webhooks).
 */
const QUIET_ROUTES = new Set(['/health', '/ready', '/metrics', '/verifier/v1/token', '/verifier/v1/authorize', '/verifier/v1/vernemq']);

/** The tags of the OpenAPI document, in the order Swagger UI shows them. */
const TAGS = [
  { name: 'Tenants', description: 'Tenants and their status (the management tenant creates, suspends and deletes them).' },
  { name: 'Users', description: 'Users of a tenant, their roles and passwords. Login is HTTP Basic `<tenantId>/<userName>`.' },
  {
    name: 'Trusted certificates',
    description: 'The CA certificates a tenant trusts (Cumulocity-compatible), proof of possession, revocation lists and chain checks.',
  },
  { name: 'Device profiles', description: 'How a device name is read from a certificate, which client ids are accepted and which topics a device may use.' },
  { name: 'Devices', description: 'Devices of a tenant and the certificates (credentials) pinned or observed for them.' },
  { name: 'Device credentials', description: 'Certificates of one device: pinned through the API, or observed when the device connected.' },
  { name: 'Revocation', description: 'Revoked serial numbers and imported CRLs of a tenant\'s CAs; a revoked device is refused and its sessions closed.' },
  { name: 'Auth events', description: 'Every verifier decision about a tenant\'s devices: why a device was allowed or refused.' },
  { name: 'Verifier', description: 'What MQTT brokers and standalone listeners call on CONNECT, with the verifier token (Bearer).' },
  { name: 'Operations', description: 'Liveness, readiness and Prometheus metrics, for load balancers and monitoring; no login.' },
];

/**
 * The route schemas as OpenAPI, keeping a body's `examples` (zod's `.meta`) that the conversion of
 * request bodies drops when a field transforms its input (e.g. `"true"` to `true`), so Swagger UI
 * shows the example bodies.
 */
const withBodyExamples: typeof jsonSchemaTransform = (input) => {
  const out = jsonSchemaTransform(input);
  const body = input.schema?.body;
  const examples = body instanceof z.ZodType ? z.globalRegistry.get(body)?.examples : undefined;
  const converted = out.schema?.body as Record<string, unknown> | undefined;
  if (!examples || !converted || 'examples' in converted) return out;
  return { ...out, schema: { ...out.schema, body: { ...converted, examples } } };
};

/** Builds the REST API: external plugins, then certgate's plugins, then feature routes. Never listens. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const info = errorInfo(deps.docs !== false);
  const app: FastifyInstance = Fastify({
    ...(typeof deps.logger === 'object'
      ? { loggerInstance: deps.logger as unknown as FastifyBaseLogger }
      : { logger: deps.logger ?? false }),
    // One line per request, written when it completes (onResponse below), instead of two.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.bodyLimit ?? 1024 * 1024,
    trustProxy: false,
    // Room for long certificate chains in headers (X-Cumulocity-Client-Cert-Chain).
    routerOptions: { maxParamLength: 500 },
    // Errors raised before a route runs, by Fastify's router and by Node's HTTP parser, answer
    // in the same {error, message, info} shape as every other error.
    frameworkErrors: frameworkErrorHandler(info),
    clientErrorHandler: clientErrorHandler(info),
  });
  app.server.on('checkExpectation', expectationFailed(info));
  app.decorate('publicUrl', deps.publicUrl?.replace(/\/+$/, ''));
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'certgate',
        description:
          'Multi-tenant device trust for MQTT: tenants, users, trusted CA certificates (Cumulocity-compatible), ' +
          'device profiles, devices and their X.509 credentials, and the verifier that MQTT brokers ask on CONNECT.',
        version: API_VERSION,
      },
      components: {
        securitySchemes: {
          basicAuth: { type: 'http', scheme: 'basic', description: 'Login `<tenantId>/<userName>` and password' },
          verifierToken: { type: 'http', scheme: 'bearer', description: 'VERIFIER_TOKEN' },
        },
      },
      security: [{ basicAuth: [] }],
      tags: TAGS,
    },
    transform: withBodyExamples,
    // Schemas registered with an id (`.meta({ id })`) become components referenced by `$ref`.
    transformObject: jsonSchemaTransformObject,
  });
  if (deps.docs !== false) await app.register(swaggerUi, { routePrefix: '/docs' });
  app.decorateRequest('logFields', undefined);

  await app.register(errorHandlerPlugin, { info });
  await app.register(inputGuardPlugin);
  await app.register(authPlugin, {
    db: deps.prisma,
    failuresBeforeLockout: deps.authFailuresBeforeLockout ?? 10,
  });

  // A callback hook: no promise per request on the verifier's hot path.
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url;
    deps.metrics.httpDuration.labels(req.method, route ?? 'unmatched', String(reply.statusCode)).observe(reply.elapsedTime / 1000);
    const level = route !== undefined && (QUIET_ROUTES.has(route) || route.startsWith('/docs')) ? 'debug' : 'info';
    req.log[level](
      {
        method: req.method,
        url: req.url,
        statusCode: reply.statusCode,
        responseTimeMs: Math.round(reply.elapsedTime * 10) / 10,
        ...(req.principal ? { tenantId: req.principal.tenantId, userName: req.principal.userName } : {}),
        ...req.logFields,
      },
      'request',
    );
    done();
  });
  // A client that closes its connection before the answer (a timeout on its side, a cancelled
  // script) is no failure of certgate: one line per burst, no stack, no request line.
  const goneAway = createBurstLogger(app.log);
  app.addHook('onRequestAbort', (req, done) => {
    goneAway.info(
      'client-gone',
      {
        method: req.method,
        url: req.url,
        ...(req.principal ? { tenantId: req.principal.tenantId, userName: req.principal.userName } : {}),
      },
      'client closed the connection before the answer',
    );
    done();
  });

  await app.register(healthRouter, {
    readiness: deps.readiness,
    metrics: deps.metrics,
    ...(deps.metricsToken ? { metricsToken: deps.metricsToken } : {}),
    metricsEnabled: deps.metricsEnabled !== false,
    info,
  });

  const { prisma } = deps;
  const runtime = createVerifierRuntime({
    prisma,
    ...(deps.changeFeed ? { feed: deps.changeFeed } : {}),
    ...(deps.publisher ? { publisher: deps.publisher } : {}),
    metrics: deps.metrics,
    logger: app.log as never,
    ...(deps.records ? { records: deps.records } : {}),
    ...(deps.trustWindowMs !== undefined ? { trustWindowMs: deps.trustWindowMs } : {}),
    ...(deps.counterTimeoutMs !== undefined ? { counterTimeoutMs: deps.counterTimeoutMs } : {}),
  });
  const { verifier, publisher } = runtime;
  app.decorate('verifier', verifier);
  app.decorate('verifierRuntime', runtime);
  app.addHook('onClose', () => runtime.close());
  const tenantsService = createTenantsService({
    prisma,
    repository: createTenantsRepository(prisma),
    publisher,
  });
  await app.register(tenantsRouter, { service: tenantsService });
  await app.register(usersRouter, { service: createUsersService({ db: prisma }) });
  await app.register(trustedCertificatesRouter, { service: createTrustedCertificatesService({ prisma, publisher }) });
  await app.register(deviceProfilesRouter, { service: createDeviceProfilesService({ prisma, publisher }) });
  await app.register(devicesRouter, { service: createDevicesService({ prisma, publisher }) });
  await app.register(revocationRouter, { service: createRevocationService({ prisma, publisher }) });
  await app.register(authEventsRouter, { prisma });
  await app.register(verifierRouter, { verifier, tokenSha256: deps.verifierTokenSha256 });
  await app.register(explainRouter, { verifier });
  const cluster = createClusterService({ cache: runtime.cache, current: () => runtime.state.current(), ...createClusterRepository(prisma) });
  await app.register(clusterRouter, { verifier, cluster, tokenSha256: deps.verifierTokenSha256 });

  return app;
}
