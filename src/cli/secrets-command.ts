/**
 * `certgate reset-secrets`: new generated secrets for an installation whose printed ones were lost
 * (or seen by too many): the management admin's password and/or the verifier token, stored
 * hashed in the service's database and printed here once.
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.js';
import path from 'node:path';
import { embeddedDatabaseUrl, hasEmbeddedDatabase, startEmbeddedPostgres, type EmbeddedDatabase } from '../db/embedded-postgres.js';
import { applyMigrations } from '../db/migrate.js';
import { createPrismaClient } from '../db/prisma.js';
import { resetSecrets } from '../modules/tenants/management-bootstrap.js';
import { checkDatabase, StartupError } from '../startup-errors.js';

export const RESET_SECRETS_HELP = `Usage: certgate reset-secrets [--admin-password] [--verifier-token]

Makes a new password for management/admin and/or a new verifier token, stores them hashed in
certgate's database and prints them once. Without options it resets both.

Run it where certgate runs, with the same DATA_DIR (embedded database; certgate may be running)
or the same DATABASE_URL. A DATA_DIR that holds no certgate database is refused. The secrets
are printed on stdout, everything else on stderr.

Options:
  --admin-password   reset the management admin's password only
  --verifier-token   reset the verifier token only
  -h, --help         this help

A new password works at once. A new verifier token is used once certgate restarts; every
standalone listener (certgate mqtt) and broker needs it too. A secret set by its environment
variable (MANAGEMENT_ADMIN_PASSWORD, VERIFIER_TOKEN) is not stored: change the variable instead.
`;

export async function runResetSecrets(argv: readonly string[]): Promise<number> {
  let values: { 'admin-password'?: boolean; 'verifier-token'?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        'admin-password': { type: 'boolean' },
        'verifier-token': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`certgate reset-secrets: ${(err as Error).message.split('. ')[0]}\n\n${RESET_SECRETS_HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(RESET_SECRETS_HELP);
    return 0;
  }

  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`certgate reset-secrets: ${err.message}\n`);
    return 2;
  }
  const both = !values['admin-password'] && !values['verifier-token'];
  const notes: string[] = [];
  let adminPassword = both || values['admin-password'] === true;
  let verifierToken = both || values['verifier-token'] === true;
  if (adminPassword && config.MANAGEMENT_ADMIN_PASSWORD) {
    adminPassword = false;
    notes.push('MANAGEMENT_ADMIN_PASSWORD is set and replaces the stored password at every start: change that variable instead');
  }
  if (verifierToken && config.VERIFIER_TOKEN) {
    verifierToken = false;
    notes.push('VERIFIER_TOKEN is set and is the token whatever is stored: change that variable instead');
  }
  // Messages go to stderr, the secrets alone to stdout.
  for (const n of notes) process.stderr.write(`certgate reset-secrets: ${n}\n`);
  if (!adminPassword && !verifierToken) return 1;
  if (!config.DATABASE_URL && !(await hasEmbeddedDatabase(config.dataDir))) {
    process.stderr.write(
      `certgate reset-secrets: ${path.resolve(config.dataDir)} holds no certgate database: ` +
        'set DATA_DIR to the data folder of the certgate whose secrets to reset, or DATABASE_URL to its database\n',
    );
    return 1;
  }

  let embedded: EmbeddedDatabase | undefined;
  try {
    let url = config.DATABASE_URL ?? (await embeddedDatabaseUrl(config.dataDir));
    if (url) await checkDatabase(url, config.DATABASE_URL ? 'DATABASE_URL' : 'DATA_DIR');
    else {
      // certgate is not running: start its embedded database for the change.
      embedded = await startEmbeddedPostgres(config.dataDir);
      url = embedded.url;
    }
    await applyMigrations(url);
    const prisma = createPrismaClient(url);
    try {
      const made = await resetSecrets(prisma, { adminPassword, verifierToken });
      const lines: string[] = [];
      if (made.adminPassword) lines.push(`management admin login: management/admin  password: ${made.adminPassword}`);
      if (made.verifierToken) lines.push(`verifier token (VERIFIER_TOKEN): ${made.verifierToken}`);
      process.stdout.write(`\n  certgate made new secrets; they are shown only this once:\n${lines.map((l) => `    ${l}`).join('\n')}\n\n`);
      if (made.verifierToken) {
        process.stderr.write('certgate reset-secrets: restart certgate to use the new verifier token, and give it to every standalone listener (VERIFIER_TOKEN)\n');
      }
    } finally {
      await prisma.$disconnect();
    }
    return 0;
  } catch (err) {
    if (!(err instanceof StartupError)) throw err;
    process.stderr.write(`certgate reset-secrets: ${err.message}\n`);
    return 1;
  } finally {
    await embedded?.stop();
  }
}
