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

export const COMMANDS: Record<string, Subcommand> = {
  certs: {
    summary: 'make CA, intermediate, server and device certificates; sign proof-of-possession codes',
    run: async (argv) => (await import('./certs-command.js')).runCertsCommand(argv),
  },
  serve: {
    summary: 'run the REST API and the MQTT listener in one process (what npm start runs)',
    run: async () => {
      await (await import('../server.js')).main('all');
      return 0;
    },
  },
  api: {
    summary: 'run the REST API (and verifier) only',
    run: async () => {
      await (await import('../server.js')).main('api');
      return 0;
    },
  },
  emqx: {
    summary: 'emqx sync: keep an EMQX 5.8 cluster\'s CA file and live sessions in step with certgate',
    run: async (argv) => (await import('../cluster/sync-command.js')).runSyncCommand('emqx', argv),
  },
  vernemq: {
    summary: 'vernemq sync: disconnect a VerneMQ cluster\'s revoked sessions; write its CA file',
    run: async (argv) => (await import('../cluster/sync-command.js')).runSyncCommand('vernemq', argv),
  },
  mqtt: {
    summary: 'run the mTLS MQTT listener alone, asking the verifier at VERIFIER_URL with VERIFIER_TOKEN',
    run: async () => {
      await (await import('../server.js')).main('mqtt');
      return 0;
    },
  },
};

function usage(): string {
  const rows = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)}${c.summary}`);
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
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return 0;
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
