import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import { buildApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createChangeFeed, type ChangeFeed } from './db/change-feed.js';
import { embeddedDatabaseUrl, releaseShutdownSignals, startEmbeddedPostgres, type EmbeddedDatabase } from './db/embedded-postgres.js';
import { applyMigrations, pendingMigrations } from './db/migrate.js';
import { createPrismaClient, type DatabaseTimeouts, type PrismaClient } from './db/prisma.js';
import { bootstrapManagement, forgetGeneratedSecrets, type BootstrapResult } from './modules/tenants/management-bootstrap.js';
import { createLogger } from './lib/logger.js';
import { checkDatabase, checkPortFree, listenFailure, StartupError, type ListenSetting } from './startup-errors.js';
import { checkVerifierToken } from './verifier/remote-verifier.js';
import { createMetrics, mqttMetricsSink, type Metrics } from './plugins/metrics.js';
import { connectionRecorderReports, createConnectionRecorder } from './mqtt/connection-recorder.js';
import { listenerDependencies, sessionChangesOf, tenantDeletionsOf, type ListenerDependencies, type ListenerSource } from './mqtt/listener-deps.js';
import { createMqttCluster, defaultWorkers, type MqttCluster } from './mqtt/mqtt-cluster.js';
import { createMqttListener, listenerLimits, type MqttListener } from './mqtt/mqtt-listener.js';
import { createDurableStore, type DurableStore } from './mqtt/durable-store.js';
import { resolveServerTls } from './mqtt/server-tls.js';
import { createVerifierRepository } from './verifier/verifier-repository.js';
import type { RecordQueueOptions } from './verifier/records-queue.js';

export interface RunningServer {
  httpAddress?: string;
  mqttPort?: number;
  /** The MQTT listener: one in this process, or a cluster of MQTT_WORKERS worker processes. */
  mqtt?: MqttListener | MqttCluster;
  close(): Promise<void>;
}

export type ServeMode = 'all' | 'api' | 'mqtt';

/**
 * Starts certgate. `all` (what `npm start` runs): database (embedded unless DATABASE_URL is set),
 * migrations, management bootstrap, the REST API and the MQTT listener asking the in-process
 * verifier. `api`: the same without the listener. `mqtt`: the listener alone, asking a remote
 * verifier (VERIFIER_URL, VERIFIER_TOKEN) and following changes on the database when it can
 * reach one. With MQTT_WORKERS above 1 the listener runs in that many worker processes sharing
 * its port (mqtt-cluster.ts), each with its own verifier. Everything opened is closed by
 * `close()`, in reverse order.
 */
export async function startServer(config: Config, mode: ServeMode = 'all', logger?: Logger): Promise<RunningServer> {
  const log = logger ?? createLogger(config);
  const closers: Array<() => Promise<unknown>> = [];
  let closing = false;
  const close = async () => {
    closing = true;
    for (const c of closers.reverse()) await c().catch((err) => log.warn({ err }, 'close failed'));
  };
  // Closing ends the change feed's connection on purpose: that is no lost connection to warn of.
  const feedLog = { warn: (obj: object, msg: string) => (closing ? undefined : log.warn(obj, msg)) };
  let forgetSecrets: (() => Promise<void>) | undefined;

  try {
    // A busy port stops the start before the database starts, not after.
    if (mode !== 'mqtt') await checkPortFree(httpSetting(config));
    if (mode !== 'api') await checkPortFree(mqttSetting(config));
    if (mode === 'mqtt') return { ...(await startStandaloneListener(config, log, closers)), close };

    let databaseUrl = config.DATABASE_URL;
    if (databaseUrl) await checkDatabase(databaseUrl);
    else {
      const dbLog = log.child({ component: 'embedded-postgres' });
      const embedded: EmbeddedDatabase = await startEmbeddedPostgres(path.join(config.dataDir), (m) => dbLog.debug(m));
      closers.push(() => embedded.stop());
      databaseUrl = embedded.url;
      log.info({ dataDir: config.dataDir }, 'embedded PostgreSQL started');
    }

    const applied = await applyMigrations(databaseUrl, (m) => log.info(m));
    log.info({ applied: applied.length }, 'database schema up to date');

    const prisma: PrismaClient = createPrismaClient(databaseUrl, databaseTimeouts(config));
    closers.push(() => prisma.$disconnect());

    const boot = await bootstrapManagement(prisma, {
      adminPassword: config.MANAGEMENT_ADMIN_PASSWORD,
      verifierToken: config.VERIFIER_TOKEN,
    });
    forgetSecrets = () => forgetGeneratedSecrets(prisma, boot);

    const feed: ChangeFeed = await createChangeFeed(databaseUrl, feedLog);
    closers.push(() => feed.close());
    const metrics = createMetrics();

    const readiness = async () => {
      let pending: string[];
      try {
        pending = await pendingMigrations((sql) => prisma.$queryRawUnsafe(sql));
      } catch {
        throw new Error('database unreachable');
      }
      if (pending.length) throw new Error(`migrations pending: ${pending.join(', ')}`);
    };

    const app = await buildApp({
      prisma,
      metrics,
      readiness,
      changeFeed: feed,
      verifierTokenSha256: boot.verifierTokenSha256,
      logger: log,
      bodyLimit: config.BODY_LIMIT_BYTES,
      authFailuresBeforeLockout: config.AUTH_FAILURES_BEFORE_LOCKOUT,
      publicUrl: config.PUBLIC_URL,
      records: recordsOptions(config),
      trustWindowMs: config.TRUST_WINDOW_MS,
      counterTimeoutMs: config.DATABASE_COUNTER_TIMEOUT_MS,
      docs: config.DOCS_ENABLED,
      metricsEnabled: config.METRICS_ENABLED,
      ...(config.METRICS_TOKEN ? { metricsToken: config.METRICS_TOKEN } : {}),
    });
    closers.push(() => app.close());

    let mqtt: { listener: MqttListener; port: number } | undefined;
    if (mode === 'all') {
      const workers = mqttWorkers(config);
      // Retained messages and persistent sessions live in the database next to the tenants they
      // belong to, written as they change; the store closes after the listener (closers run last
      // first), writing what is still pending. With workers, each writes its own and this process
      // loads them at start.
      const durable = createDurableStore(prisma, log.child({ component: 'mqtt' }));
      closers.push(() => durable.close());
      if (workers > 1) {
        mqtt = await startListener(config, log, closers, metrics, { durable, workers, source: { verifier: 'in-process', databaseUrl, databaseTimeouts: databaseTimeouts(config), records: recordsOptions(config), trustWindowMs: config.TRUST_WINDOW_MS } });
      } else {
        const recorder = createConnectionRecorder({
          flush: (batch) => createVerifierRepository(prisma).touchDevices(batch),
          ...connectionRecorderReports(log, metrics),
          closeWaitMs: config.RECORDS_SHUTDOWN_WAIT_MS,
        });
        closers.push(() => recorder.close());
        mqtt = await startListener(config, log, closers, metrics, {
          deps: {
            durable,
            verifier: app.verifier,
            sessionChanges: sessionChangesOf(feed, app.verifierRuntime),
            tenantDeletions: tenantDeletionsOf(feed, prisma),
            connectionRecorder: recorder,
          },
        });
      }
    }

    const httpAddress = await app.listen({ host: config.HTTP_HOST, port: config.HTTP_PORT }).catch((err: unknown) => {
      throw listenFailure(err, httpSetting(config)) ?? err;
    });
    log.info({ url: httpAddress, ...(config.DOCS_ENABLED ? { docs: `${httpAddress}/docs` } : {}), mode }, 'REST API listening');
    // Shown once everything listens: a start that fails never shows secrets it then drops.
    announceSecrets(boot);
    return { httpAddress, ...(mqtt ? { mqtt: mqtt.listener, mqttPort: mqtt.port } : {}), close };
  } catch (err) {
    // Generated secrets nobody saw are removed, so the next start makes and shows new ones.
    await forgetSecrets?.().catch((e: unknown) => log.warn({ err: e }, 'generated secrets not removed'));
    await close();
    throw err;
  }
}

/** How long each database call may take (statement, connection). */
function databaseTimeouts(config: Config): DatabaseTimeouts {
  return {
    statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
    acquireTimeoutMs: config.DATABASE_ACQUIRE_TIMEOUT_MS,
    counterTimeoutMs: config.DATABASE_COUNTER_TIMEOUT_MS,
  };
}

/** How many records may wait for the database, and how long a stop waits for them to be written. */
function recordsOptions(config: Config): RecordQueueOptions {
  return { limit: config.RECORDS_QUEUE_LIMIT, closeWaitMs: config.RECORDS_SHUTDOWN_WAIT_MS };
}

function httpSetting(config: Config): ListenSetting {
  return { host: config.HTTP_HOST, port: config.HTTP_PORT, hostSetting: 'HTTP_HOST', portSetting: 'HTTP_PORT' };
}

function mqttSetting(config: Config): ListenSetting {
  return { host: config.MQTT_TLS_HOST, port: config.MQTT_TLS_PORT, hostSetting: 'MQTT_TLS_HOST', portSetting: 'MQTT_TLS_PORT' };
}

/** MQTT_WORKERS, or one per CPU this process may use. */
function mqttWorkers(config: Config): number {
  return config.MQTT_WORKERS ?? defaultWorkers();
}

/**
 * The listener in this process on the given dependencies, or `workers` worker processes that
 * each build theirs from `source`.
 */
async function startListener(
  config: Config,
  log: Logger,
  closers: Array<() => Promise<unknown>>,
  metrics: Metrics | undefined,
  how: { deps: ListenerDependencies } | { workers: number; source: ListenerSource; durable?: DurableStore },
): Promise<{ listener: MqttListener; port: number }> {
  const tls = await resolveServerTls({
    dataDir: config.dataDir,
    certPath: config.MQTT_TLS_CERT,
    keyPath: config.MQTT_TLS_KEY,
    warn: (m) => log.warn(m),
  }).catch((err: unknown) => {
    if (!config.MQTT_TLS_CERT) throw err;
    const why = ((err as Error).message ?? String(err)).split('\n')[0];
    throw new StartupError(`cannot use MQTT_TLS_CERT and MQTT_TLS_KEY (${why}): set them to a readable PEM certificate and its private key`);
  });
  if (tls.caPath) {
    log.info({ ca: tls.caPath, generated: tls.generated }, 'MQTT server certificate made by certgate: devices trust this CA file');
  }
  const common = {
    host: config.MQTT_TLS_HOST,
    port: config.MQTT_TLS_PORT,
    tls: { cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca } : {}) },
    limits: listenerLimits(config),
  };
  let listener: MqttListener;
  if ('deps' in how) {
    const { limits, ...rest } = common;
    listener = createMqttListener({
      ...how.deps,
      ...rest,
      ...limits,
      logger: log,
      ...(metrics ? { metrics: mqttMetricsSink(metrics) } : {}),
    });
  } else {
    const workers = createMqttCluster({
      workers: how.workers,
      spec: { ...common, source: how.source, logLevel: config.LOG_LEVEL, logFormat: config.LOG_FORMAT },
      logger: log,
      ...(how.durable ? { durable: how.durable } : {}),
    });
    // The workers' verifiers count their decisions; a scrape of this process adds them up.
    metrics?.observeOtherProcesses(() => workers.workerMetrics());
    listener = workers;
  }
  closers.push(() => listener.close());
  const { port } = await listener.listen().catch((err: unknown) => {
    throw listenFailure(err, mqttSetting(config)) ?? err;
  });
  metrics?.observeMqttListener(() => listener.stats);
  log.info({ port, workers: 'workers' in how ? how.workers : 1 }, 'mTLS MQTT listener ready');
  return { listener, port };
}

/** `certgate mqtt`: the listener alone, asking the verifier over HTTP. */
async function startStandaloneListener(
  config: Config,
  log: Logger,
  closers: Array<() => Promise<unknown>>,
): Promise<Omit<RunningServer, 'close'>> {
  if (!config.VERIFIER_URL) {
    throw new StartupError(
      'the listener alone asks the verifier over HTTP: set VERIFIER_URL to the certgate API\'s base URL (e.g. http://localhost:8080)',
    );
  }
  if (!config.VERIFIER_TOKEN) {
    throw new StartupError(
      'the listener alone needs the verifier token: set VERIFIER_TOKEN to the token the API printed on its first start (or the API\'s VERIFIER_TOKEN)',
    );
  }
  const check = await checkVerifierToken({ url: config.VERIFIER_URL, token: config.VERIFIER_TOKEN });
  if (check.problem) throw new StartupError(check.problem);
  if (check.warning) log.warn({ verifierUrl: config.VERIFIER_URL }, check.warning);
  // Session drops and lastConnectedAt need the database the API writes to; without one the
  // listener still authenticates every CONNECT through the verifier.
  const databaseUrl = config.DATABASE_URL ?? (await embeddedDatabaseUrl(config.dataDir));
  const source: ListenerSource = {
    verifier: 'remote',
    url: config.VERIFIER_URL,
    token: config.VERIFIER_TOKEN,
    ...(databaseUrl ? { databaseUrl } : {}),
    databaseTimeouts: databaseTimeouts(config),
    records: recordsOptions(config),
  };
  if (!databaseUrl) {
    log.warn(
      'no DATABASE_URL: persistent MQTT sessions and retained messages are kept in memory only (lost when the listener stops), and live sessions are not closed when their CA, device or tenant changes',
    );
  }
  const workers = mqttWorkers(config);
  let durable: DurableStore | undefined;
  if (workers > 1 && databaseUrl) {
    // This process loads the stored sessions and retained messages for the workers, which write them.
    const prisma = createPrismaClient(databaseUrl, { poolSize: 1, ...databaseTimeouts(config) });
    closers.push(() => prisma.$disconnect());
    durable = createDurableStore(prisma, log.child({ component: 'mqtt' }));
    closers.push(() => durable!.close());
  }
  const { listener, port } =
    workers > 1
      ? await startListener(config, log, closers, undefined, { workers, source, ...(durable ? { durable } : {}) })
      : await startListener(config, log, closers, undefined, { deps: await listenerDependencies(source, log, closers) });
  return { mqtt: listener, mqttPort: port };
}

/** Generated secrets are shown once, in plain text on stdout, and never logged afterwards. */
function announceSecrets(boot: Pick<BootstrapResult, 'generatedAdminPassword' | 'generatedVerifierToken'>): void {
  const lines: string[] = [];
  if (boot.generatedAdminPassword) {
    lines.push(`management admin login: management/admin  password: ${boot.generatedAdminPassword}`);
  }
  if (boot.generatedVerifierToken) lines.push(`verifier token (VERIFIER_TOKEN): ${boot.generatedVerifierToken}`);
  if (lines.length) {
    process.stdout.write(
      `\n  certgate generated these secrets on first start; they are shown only this once:\n${lines
        .map((l) => `    ${l}`)
        .join('\n')}\n\n`,
    );
  }
}

/** Runs until SIGINT/SIGTERM, then closes everything. */
export async function main(mode: ServeMode = 'all'): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`certgate cannot start, ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config);
  let server: RunningServer;
  try {
    server = await startServer(config, mode, log);
  } catch (err) {
    if (err instanceof StartupError) {
      process.stderr.write(`certgate cannot start: ${err.message}\n`);
    } else {
      log.fatal({ err }, 'certgate failed to start');
    }
    process.exit(1);
  }
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    await server.close();
    process.exit(0);
  };
  releaseShutdownSignals();
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  stopWithParent(() => void stop('parent process exited'));
}

/**
 * Calls `stop` once the process that started this one is gone: a launcher (npx, npm, a shell)
 * that was stopped without passing the signal on must not leave certgate, its embedded database
 * and its listeners running. Seen as the end of the IPC channel when there is one, or as a new
 * parent process id (the orphan is adopted by init or a subreaper). A process started by init
 * itself (a container's PID 1, a systemd unit) has no launcher to watch.
 */
export function stopWithParent(stop: () => void, intervalMs = 1000): void {
  if (process.channel) process.once('disconnect', stop);
  const parent = process.ppid;
  if (parent <= 1) return;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    stop();
  }, intervalMs);
  timer.unref();
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  // `npm start -- --help` is `certgate serve --help`.
  const args = process.argv.slice(2);
  if (args.length > 0) process.exitCode = await (await import('./cli/main.js')).main(['serve', ...args]);
  else void main('all');
}
