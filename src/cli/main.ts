/**
 * The `certgate` command: one table of subcommands, each loaded only when it runs, so
 * `certgate certs` never loads the server (database, Fastify, Prisma).
 */
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';

export interface Subcommand {
  summary: string;
  /** Resolves to the exit status. Long-running commands resolve once started and keep the process alive. */
  run(argv: readonly string[]): Promise<number>;
}

/** One line of a command's settings: the variables and what they are for. */
const setting = (names: string, what: string) => `  ${names.padEnd(32)}${what}`;

const HTTP = setting('HTTP_HOST, HTTP_PORT', 'REST API address (default 0.0.0.0:8080)');
const MQTT = [
  setting('MQTT_TLS_HOST, MQTT_TLS_PORT', 'mTLS MQTT listener address (default 0.0.0.0:8883)'),
  setting('MQTT_TLS_CERT, MQTT_TLS_KEY', "the listener's certificate and key (default: made under DATA_DIR/tls)"),
  setting('MQTT_WORKERS', 'listener processes (default: one per CPU)'),
];
const LOGS = setting('LOG_LEVEL, LOG_FORMAT', 'info; auto (readable on a terminal, JSON otherwise), pretty or json');
const API_SETTINGS = [
  setting('DATABASE_URL', 'PostgreSQL URL (default: an embedded PostgreSQL under DATA_DIR)'),
  setting('MANAGEMENT_ADMIN_PASSWORD', 'password of management/admin (default: generated, printed once)'),
  setting('VERIFIER_TOKEN', "the verifier's bearer token (default: generated, printed once)"),
  setting('METRICS_TOKEN, METRICS_ENABLED', 'protect or remove /metrics'),
  setting('DOCS_ENABLED', 'false removes /docs and /docs/json'),
];

const settings = (heading: string, lines: readonly string[]) => `${heading}\n${lines.join('\n')}`;
const ALL_OF_THEM = "Settings are environment variables; the README's configuration table lists all of them.";

const SERVE_ENVIRONMENT = settings('Settings (all optional):', [
  HTTP,
  ...MQTT,
  ...API_SETTINGS,
  setting('DATA_DIR', 'embedded database and generated TLS files (default .data)'),
  LOGS,
]);
const API_ENVIRONMENT = settings('Settings (all optional):', [
  HTTP,
  ...API_SETTINGS,
  setting('DATA_DIR', 'the embedded database (default .data)'),
  LOGS,
]);
const MQTT_ENVIRONMENT = `${settings('Required:', [
  setting('VERIFIER_URL', "the certgate API's base URL, e.g. http://api-host:8080"),
  setting('VERIFIER_TOKEN', "the API's verifier token (its VERIFIER_TOKEN, or the one it printed)"),
])}

${settings('Optional:', [
  ...MQTT,
  setting('DATABASE_URL', 'with it, live sessions close when their CA, device or tenant'),
  setting('', 'changes, and persistent sessions and retained messages are'),
  setting('', 'stored there as they change; without it they are kept in memory'),
  setting('', 'only, lost when the listener stops (found by itself next to an'),
  setting('', 'embedded database in DATA_DIR)'),
  setting('DATA_DIR', 'generated TLS files; an embedded database there (default .data)'),
  LOGS,
])}`;

const serviceHelp = (usage: string, what: string, environment: string) =>
  `Usage: ${usage}\n\n${what}\n\n${environment}\n\n${ALL_OF_THEM}\nStops on SIGINT (Ctrl-C) or SIGTERM, or when the process that started it ends.\n`;

/** Runs a service mode; `--help` prints its help, anything else is refused before anything starts. */
function serviceCommand(mode: 'all' | 'api' | 'mqtt', help: string): (argv: readonly string[]) => Promise<number> {
  return async (argv) => {
    if (argv.some((a) => a === '--help' || a === '-h')) {
      process.stdout.write(help);
      return 0;
    }
    if (argv.length > 0) {
      process.stderr.write(`certgate: unexpected argument "${argv[0]}"; settings are environment variables\n\n${help}`);
      return 2;
    }
    await (await import('../server.js')).main(mode);
    return 0;
  };
}

const SERVE_HELP = serviceHelp(
  'certgate serve',
  'Runs the REST API (with Swagger UI at /docs), the verifier and the mTLS MQTT listener in one\n' +
    'process: what npm start runs. On the first start it prints the generated management admin\n' +
    'password and verifier token once, after the service is up.',
  SERVE_ENVIRONMENT,
);
const API_HELP = serviceHelp(
  'certgate api',
  'Runs the REST API and the verifier without the MQTT listener; listeners run apart with\n' +
    '"certgate mqtt", or an EMQX/VerneMQ cluster asks the verifier.',
  API_ENVIRONMENT,
);
const MQTT_HELP = serviceHelp(
  'certgate mqtt',
  'Runs the mTLS MQTT listener alone. It asks the verifier of a running "certgate api" over HTTP\n' +
    'and checks VERIFIER_TOKEN with one call when it starts. It opens no HTTP port, so it has no\n' +
    "/metrics, /health or /docs: its log has one line per connection attempt, and the API's\n" +
    "/metrics counts the verifier's decisions.",
  MQTT_ENVIRONMENT,
);

export const COMMANDS: Record<string, Subcommand> = {
  serve: {
    summary: 'run the REST API and the MQTT listener in one process (what npm start runs)',
    run: serviceCommand('all', SERVE_HELP),
  },
  api: {
    summary: 'run the REST API (and verifier) only',
    run: serviceCommand('api', API_HELP),
  },
  mqtt: {
    summary: 'run the mTLS MQTT listener alone, asking the verifier at VERIFIER_URL with VERIFIER_TOKEN',
    run: serviceCommand('mqtt', MQTT_HELP),
  },
  'reset-secrets': {
    summary: 'make a new management admin password and/or verifier token and print them once',
    run: async (argv) => (await import('./secrets-command.js')).runResetSecrets(argv),
  },
  certs: {
    summary: 'make CA, intermediate, server and device certificates; sign proof-of-possession codes',
    run: async (argv) => (await import('./certs-command.js')).runCertsCommand(argv),
  },
  emqx: {
    summary: 'emqx sync: keep an EMQX 5.8 cluster\'s CA file and live sessions in step with certgate',
    run: async (argv) => (await import('../cluster/sync-command.js')).runSyncCommand('emqx', argv),
  },
  vernemq: {
    summary: 'vernemq sync: disconnect a VerneMQ cluster\'s revoked sessions; write its CA file',
    run: async (argv) => (await import('../cluster/sync-command.js')).runSyncCommand('vernemq', argv),
  },
};

function usage(): string {
  const rows = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(15)}${c.summary}`);
  return `Usage: certgate <command> [options]\n\nCommands:\n${rows.join('\n')}\n\nRun "certgate <command> --help" for a command's options.\n`;
}

function version(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(usage());
    return 2;
  }
  if (name === '--help' || name === '-h') {
    process.stdout.write(usage());
    return 0;
  }
  if (name === 'help') {
    // `certgate help <command>` is `certgate <command> --help`.
    const topic = rest[0] === undefined ? undefined : COMMANDS[rest[0]];
    if (!topic) {
      process.stdout.write(usage());
      return 0;
    }
    return topic.run(['--help']);
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`certgate ${version()}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`certgate: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  return command.run(rest);
}

/** Runs `main` with this process's arguments; the exit status is set, not forced, so output drains. */
export async function run(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  process.exitCode = await main(argv);
}

// `node dist/cli/main.js ...` (the compiled image has no bin/ launcher).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run();
}
