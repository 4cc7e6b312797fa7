/**
 * `certgate emqx sync` and `certgate vernemq sync`: a long-running process next to certgate that
 * keeps a clustered broker in step with it (see broker-sync.ts). It needs the database certgate
 * uses (DATABASE_URL, or the embedded one of the same DATA_DIR) and the broker's API.
 */
import { pino } from 'pino';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { createChangeFeed } from '../db/change-feed.js';
import { embeddedDatabaseUrl } from '../db/embedded-postgres.js';
import { createPrismaClient } from '../db/prisma.js';
import { createBrokerSync, type BrokerAdapter } from './broker-sync.js';
import { createSyncRepository } from './cluster-repository.js';
import { createEmqxApi } from './emqx-api.js';
import { createVernemqApi } from './vernemq-api.js';

export type Broker = 'emqx' | 'vernemq';

const USAGE: Record<Broker, string> = {
  emqx: `Usage: certgate emqx sync

Follows certgate's change feed and keeps an EMQX 5.8 cluster in step: pushes the CA bundle (every
enabled trusted certificate of every tenant) to the TLS listener through EMQX's REST API at start
and when it changes, and kicks the live sessions a change affects (a suspended tenant, a disabled
device, a disabled or deleted trusted certificate, a revoked serial). Runs until stopped.

Environment:
  DATABASE_URL       certgate's PostgreSQL (or the embedded one of DATA_DIR)
  EMQX_API_URL       EMQX's REST API, e.g. http://emqx1:18083
  EMQX_API_KEY       API key (api_key.bootstrap_file)
  EMQX_API_SECRET    its secret
  EMQX_LISTENER_ID   the TLS listener (default ssl:default)
`,
  vernemq: `Usage: certgate vernemq sync

Follows certgate's change feed and keeps a VerneMQ cluster in step: disconnects the live sessions
a change affects through VerneMQ's HTTP API, and writes the CA bundle to VERNEMQ_CA_FILE when it
changes (VerneMQ reads it when its listener starts). Runs until stopped.

Environment:
  DATABASE_URL       certgate's PostgreSQL (or the embedded one of DATA_DIR)
  VERNEMQ_API_URL    VerneMQ's HTTP API, e.g. http://vernemq1:8888
  VERNEMQ_API_KEY    API key (vmq-admin api-key create)
  VERNEMQ_CA_FILE    where to write the CA bundle (optional)
`,
};

function adapterFor(broker: Broker, config: Config): BrokerAdapter {
  const missing = (names: string[]) => new ConfigError(names.map((n) => `${n}: required by certgate ${broker} sync`));
  if (broker === 'emqx') {
    const absent = (['EMQX_API_URL', 'EMQX_API_KEY', 'EMQX_API_SECRET'] as const).filter((k) => !config[k]);
    if (absent.length) throw missing(absent);
    return createEmqxApi({ url: config.EMQX_API_URL!, apiKey: config.EMQX_API_KEY!, apiSecret: config.EMQX_API_SECRET!, listenerId: config.EMQX_LISTENER_ID });
  }
  const absent = (['VERNEMQ_API_URL', 'VERNEMQ_API_KEY'] as const).filter((k) => !config[k]);
  if (absent.length) throw missing(absent);
  return createVernemqApi({ url: config.VERNEMQ_API_URL!, apiKey: config.VERNEMQ_API_KEY!, caFile: config.VERNEMQ_CA_FILE });
}

export async function runSyncCommand(broker: Broker, argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help' || rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(USAGE[broker]);
    return 0;
  }
  if (sub !== 'sync' || rest.length > 0) {
    const why =
      sub === undefined
        ? `certgate ${broker}: name a command (sync)`
        : sub !== 'sync'
          ? `certgate ${broker}: unknown command "${sub}" (the command is sync)`
          : `certgate ${broker} sync: unexpected argument "${rest[0]}"; settings are environment variables`;
    process.stderr.write(`${why}\n\n${USAGE[broker]}`);
    return 2;
  }
  let config: Config;
  let broker_: BrokerAdapter;
  try {
    config = loadConfig();
    broker_ = adapterFor(broker, config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`certgate ${broker} sync cannot start, ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = pino({ level: config.LOG_LEVEL, base: { service: 'certgate', component: `${broker}-sync` } });
  const databaseUrl = config.DATABASE_URL ?? (await embeddedDatabaseUrl(config.dataDir));
  if (!databaseUrl) {
    process.stderr.write(`certgate ${broker} sync cannot start: set DATABASE_URL (certgate's PostgreSQL)\n`);
    return 2;
  }
  const prisma = createPrismaClient(databaseUrl);
  const feed = await createChangeFeed(databaseUrl, log);
  const sync = createBrokerSync({ feed, broker: broker_, repository: createSyncRepository(prisma), log });
  // The broker may still be starting: the first push is retried until it is taken.
  for (let delay = 1_000; ; delay = Math.min(delay * 2, 30_000)) {
    try {
      await sync.start();
      break;
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'CA bundle not pushed yet; retrying');
      await new Promise((r) => setTimeout(r, delay));
    }
  }
  log.info('following the change feed');
  const stop = async () => {
    await sync.close();
    await feed.close();
    await prisma.$disconnect();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  return 0;
}
