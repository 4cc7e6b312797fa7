#!/usr/bin/env node
// Stand-in for Prisma's native `schema-engine` binary, for machines that cannot download it.
//
// prisma.config.ts points PRISMA_SCHEMA_ENGINE_BINARY at this file. The Prisma CLI then spawns it
// exactly as it would spawn the native engine and talks to it in the same two ways:
//   - `--datasource <json> cli <command>`: one-shot commands (can-connect-to-database,
//     create-database, drop-database). Answered here with `pg`.
//   - `[--datamodels <file>]... [--datasource <json>]`: JSON-RPC 2.0, one message per line on
//     stdin/stdout, until stdin closes. Answered by the WebAssembly build of the same engine
//     (`@prisma/schema-engine-wasm`) driving PostgreSQL through `@prisma/adapter-pg`.
// Around the adapter it fixes what the wasm engine needs and the adapter lacks:
//   1. introspection reads Postgres's internal `"char"` columns (pg_constraint.contype, ...),
//      which the adapter rejects: the adapter reads them as text and the engine gets them typed
//      as Character, as it expects;
//   2. the shadow database is a fresh database created here, reached through its own adapter
//      (the adapter's own shadow connection reuses the main connection string, which names the
//      main database), and its pool is closed before it is dropped;
//   3. the engine always has a shadow-database factory: when a command replays the history
//      through the connector instead ("PostgreSQL shadow DB must be provided through an external
//      factory", evaluateDataLoss in `migrate dev`), the replay is redone through the factory;
//   4. `?schema=` in the URL becomes the connection's search_path and the adapter's `schema`.
// It also runs migration scripts in one round trip instead of splitting them on `;` (which would
// break dollar-quoted bodies and string literals).
//
// The JSON-RPC protocol is internal to Prisma: keep prisma, @prisma/* and
// @prisma/schema-engine-wasm pinned to the versions in package.json and keep
// test/db/prisma-offline.test.ts passing when changing any of them.

import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);

const EXIT_PANIC = 101;
// JSON-RPC error code used by the native engine for every engine error; details are in `data`.
const RPC_ENGINE_ERROR = 4466;

// Query-string parameters that only Prisma's native drivers understand; `pg` must not see them.
const PRISMA_ONLY_PARAMS = [
  'schema',
  'connection_limit',
  'pool_timeout',
  'socket_timeout',
  'statement_cache_size',
  'pgbouncer',
  'sslaccept',
  'sslidentity',
  'sslpassword',
];

const OID_CHAR = 18; // Postgres's one-byte internal "char" type
const OID_TEXT = 25;

// ---------------------------------------------------------------------------------------------
// Arguments

function parseArgs(argv) {
  const args = { datamodels: [], datasource: undefined, cli: undefined, version: false, help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--datamodels' || a === '-d') args.datamodels.push(argv[++i]);
    else if (a === '--datasource') args.datasource = JSON.parse(argv[++i]);
    else if (a === '--enabled-preview-features' || a === '--extension-types') i++;
    else if (a === '--version' || a === '-V') args.version = true;
    else if (a === '--help' || a === '-h') args.help = true;
    else if (a === 'cli') {
      args.cli = argv[i + 1];
      break;
    }
  }
  return args;
}

// ---------------------------------------------------------------------------------------------
// Connection strings

class UserFacingError extends Error {
  constructor(code, message, meta) {
    super(message);
    this.code = code;
    this.meta = meta;
  }
}

/** Splits a postgres URL into a `pg` pool config and the Prisma schema (`?schema=`). */
function connectionConfig(url, database) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    throw new UserFacingError('P1013', 'The provided database string is invalid. The URL could not be parsed.');
  }
  if (parsed.protocol !== 'postgresql:' && parsed.protocol !== 'postgres:') {
    throw new UserFacingError(
      'P1013',
      `The provided database string is invalid. This engine only serves PostgreSQL URLs (postgresql://...), got ${parsed.protocol}//...`,
    );
  }
  const schema = parsed.searchParams.get('schema') || 'public';
  const connectTimeout = Number(parsed.searchParams.get('connect_timeout') ?? 5);
  for (const p of [...PRISMA_ONLY_PARAMS, 'connect_timeout']) parsed.searchParams.delete(p);
  if (database !== undefined) parsed.pathname = `/${encodeURIComponent(database)}`;
  const searchPath = `-c search_path=${quoteIdent(schema).replace(/[\\ ]/g, (c) => `\\${c}`)}`;
  const extra = parsed.searchParams.get('options');
  parsed.searchParams.delete('options');
  return {
    schema,
    database: decodeURIComponent(parsed.pathname.slice(1)) || decodeURIComponent(parsed.username) || 'postgres',
    host: parsed.hostname,
    port: parsed.port || '5432',
    pool: {
      connectionString: parsed.toString(),
      options: extra ? `${extra} ${searchPath}` : searchPath,
      connectionTimeoutMillis: connectTimeout > 0 ? connectTimeout * 1000 : 0,
      max: 4,
    },
  };
}

function quoteIdent(name) {
  return `"${name.replace(/"/g, '""')}"`;
}

// ---------------------------------------------------------------------------------------------
// Lazily loaded dependencies

let pgModule;
async function pg() {
  pgModule ??= (await import('pg')).default;
  return pgModule;
}

async function loadAdapterModules() {
  const adapterEntry = require.resolve('@prisma/adapter-pg');
  const { PrismaPg } = await import(pathToFileURL(adapterEntry).href);
  // @prisma/driver-adapter-utils is the adapter's own dependency: resolve it from there.
  const utilsEntry = createRequire(adapterEntry).resolve('@prisma/driver-adapter-utils');
  const { bindMigrationAwareSqlAdapterFactory, ColumnTypeEnum } = await import(pathToFileURL(utilsEntry).href);
  return { PrismaPg, bindMigrationAwareSqlAdapterFactory, ColumnTypeEnum };
}

async function loadWasmEngine() {
  const bgEntry = require.resolve('@prisma/schema-engine-wasm/schema_engine_bg');
  const bg = await import(pathToFileURL(bgEntry).href);
  // The package's own entry imports the .wasm file as an ES module, which Node only does behind a
  // flag; instantiate it by hand with the glue module as its import object instead.
  const bytes = fs.readFileSync(path.join(path.dirname(bgEntry), 'schema_engine_bg.wasm'));
  const { instance } = await WebAssembly.instantiate(bytes, { './schema_engine_bg.js': bg });
  bg.__wbg_set_wasm(instance.exports);
  instance.exports.__wbindgen_start();
  return bg;
}

// ---------------------------------------------------------------------------------------------
// Plain-pg helpers for the one-shot commands and for shadow databases

/** Runs `fn` with a client connected to the server's maintenance database. */
async function withAdminClient(cfg, fn) {
  const { Client } = await pg();
  const candidates = ['postgres', 'template1'];
  let lastError;
  for (const db of candidates) {
    const c = connectionConfig(cfg.url, db);
    const client = new Client({ connectionString: c.pool.connectionString, connectionTimeoutMillis: c.pool.connectionTimeoutMillis });
    try {
      await client.connect();
    } catch (err) {
      lastError = err;
      await client.end().catch(() => {});
      if (err?.code === '3D000') continue; // no such maintenance database: try the next
      throw toUserFacing(err, c);
    }
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => {});
    }
  }
  throw toUserFacing(lastError, connectionConfig(cfg.url));
}

/** Maps a `pg` error to the error code and message the native engine would have given. */
function toUserFacing(err, c) {
  if (err instanceof UserFacingError) return err;
  const where = `${c.host}:${c.port}`;
  switch (err?.code) {
    case '3D000':
      return new UserFacingError('P1003', `Database \`${c.database}\` does not exist on the database server at \`${where}\`.`, {
        database_name: c.database,
        database_host: c.host,
        database_port: Number(c.port),
      });
    case '28P01':
    case '28000':
      return new UserFacingError('P1000', `Authentication failed against database server at \`${c.host}\`, the provided database credentials are not valid.\n\nPlease make sure to provide valid database credentials for the database server at \`${c.host}\`.`);
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ETIMEDOUT':
      return new UserFacingError('P1001', `Can't reach database server at \`${where}\`\n\nPlease make sure your database server is running at \`${where}\`.`);
    default:
      if (/timeout/i.test(err?.message ?? '')) {
        return new UserFacingError('P1001', `Can't reach database server at \`${where}\`\n\nPlease make sure your database server is running at \`${where}\`.`);
      }
      return err instanceof Error ? err : new Error(String(err));
  }
}

async function databaseExists(cfg) {
  const c = connectionConfig(cfg.url);
  return withAdminClient(cfg, async (client) => {
    const r = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [c.database]);
    return r.rowCount > 0;
  });
}

/** Creates the URL's database (and its schema, when not `public`) if missing; returns its name. */
async function createDatabase(cfg) {
  const c = connectionConfig(cfg.url);
  if (!(await databaseExists(cfg))) {
    await withAdminClient(cfg, (client) => client.query(`CREATE DATABASE ${quoteIdent(c.database)}`));
  }
  await ensureSchema(c);
  return c.database;
}

async function ensureSchema(c) {
  if (c.schema === 'public') return;
  const { Client } = await pg();
  const client = new Client({ connectionString: c.pool.connectionString, connectionTimeoutMillis: c.pool.connectionTimeoutMillis });
  try {
    await client.connect();
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(c.schema)}`);
  } catch (err) {
    throw toUserFacing(err, c);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Drops and recreates the URL's schema: everything in it is lost. */
async function resetSchema(c) {
  const { Client } = await pg();
  const client = new Client({ connectionString: c.pool.connectionString, connectionTimeoutMillis: c.pool.connectionTimeoutMillis });
  try {
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(c.schema)} CASCADE`);
    await client.query(`CREATE SCHEMA ${quoteIdent(c.schema)}`);
  } catch (err) {
    throw toUserFacing(err, c);
  } finally {
    await client.end().catch(() => {});
  }
}

async function dropDatabase(cfg) {
  const c = connectionConfig(cfg.url);
  await withAdminClient(cfg, (client) => dropDatabaseWith(client, c.database));
}

async function dropDatabaseWith(client, name) {
  try {
    // WITH (FORCE) (PostgreSQL 13+) also ends connections a crashed step may have left behind.
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
  } catch (err) {
    if (err?.code !== '42601') throw err; // syntax error: a server older than 13
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)}`);
  }
}

async function canConnect(cfg) {
  const { Client } = await pg();
  const c = connectionConfig(cfg.url);
  const client = new Client({ connectionString: c.pool.connectionString, connectionTimeoutMillis: c.pool.connectionTimeoutMillis });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    throw toUserFacing(err, c);
  } finally {
    await client.end().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// One-shot `cli` commands. Errors are reported the way the CLI parses them: JSON log lines on
// stderr (the first line is skipped by the CLI), an ERROR from target schema_engine::logger.

function logLine(level, message, extra = {}) {
  return JSON.stringify({ timestamp: new Date().toISOString(), level, fields: { message, ...extra }, target: 'schema_engine::logger' });
}

async function runCliCommand(args) {
  const url = args.datasource?.url;
  try {
    if (!url) throw new UserFacingError('P1012', 'No datasource URL was given (--datasource {"url": ...}).');
    const cfg = { url };
    switch (args.cli) {
      case 'can-connect-to-database':
        await canConnect(cfg);
        break;
      case 'create-database': {
        const name = await createDatabase(cfg);
        process.stdout.write(`Database '${name}' was successfully created.\n`);
        break;
      }
      case 'drop-database':
        await dropDatabase(cfg);
        process.stdout.write('The database was successfully dropped.\n');
        break;
      default:
        throw new Error(`Unknown command: cli ${args.cli}`);
    }
    return 0;
  } catch (err) {
    const fields = { message: redact(String(err?.message ?? err), url) };
    if (err?.code && /^P\d{4}$/.test(err.code)) fields.error_code = err.code;
    process.stderr.write(`${logLine('INFO', 'Starting schema engine (wasm stand-in)')}\n`);
    process.stderr.write(logLine('ERROR', fields.message, fields.error_code ? { error_code: fields.error_code } : {}));
    return 1;
  }
}

function redact(text, url) {
  return url ? text.split(url).join('<REDACTED>') : text;
}

// ---------------------------------------------------------------------------------------------
// Adapter factory handed to the wasm engine

function createAdapterFactory({ PrismaPg, bindMigrationAwareSqlAdapterFactory, ColumnTypeEnum }, datasource) {
  const main = connectionConfig(datasource.url);
  const adapters = new Set(); // every open adapter, disposed at exit
  const shadowDatabases = new Set(); // created here, dropped when their adapter is disposed or at exit

  async function open(c) {
    const adapter = await new PrismaPg(c.pool, { schema: c.schema }).connect();
    patchAdapter(adapter, ColumnTypeEnum);
    const dispose = adapter.dispose.bind(adapter);
    let disposed = false;
    adapter.dispose = async () => {
      if (disposed) return;
      disposed = true;
      adapters.delete(adapter);
      await dispose();
    };
    adapters.add(adapter);
    return adapter;
  }

  const factory = {
    provider: 'postgres',
    adapterName: '@prisma/adapter-pg',
    connect: () => open(main),
    async connectToShadowDb() {
      if (datasource.shadowDatabaseUrl) {
        // A configured shadow database is kept, but emptied first, as the native engine does.
        const shadow = connectionConfig(datasource.shadowDatabaseUrl);
        if (shadow.host === main.host && shadow.port === main.port && shadow.database === main.database && shadow.schema === main.schema) {
          throw new Error('The shadow database must not be the main database: set SHADOW_DATABASE_URL to another database.');
        }
        await resetSchema(shadow);
        return open(shadow);
      }
      const name = `prisma_migrate_shadow_db_${randomUUID()}`;
      await withAdminClient({ url: datasource.url }, (client) => client.query(`CREATE DATABASE ${quoteIdent(name)}`));
      shadowDatabases.add(name);
      const shadow = connectionConfig(datasource.url, name);
      try {
        await ensureSchema(shadow);
        const adapter = await open(shadow);
        const dispose = adapter.dispose;
        adapter.dispose = async () => {
          // Close the pool first: Postgres refuses to drop a database that has sessions.
          await dispose();
          await dropShadow(name);
        };
        return adapter;
      } catch (err) {
        await dropShadow(name).catch(() => {});
        throw err;
      }
    },
  };

  async function dropShadow(name) {
    if (!shadowDatabases.has(name)) return;
    await withAdminClient({ url: datasource.url }, (client) => dropDatabaseWith(client, name));
    shadowDatabases.delete(name);
  }

  async function closeAll() {
    for (const adapter of [...adapters]) await adapter.dispose().catch(() => {});
    for (const name of [...shadowDatabases]) await dropShadow(name).catch(() => {});
  }

  return { bound: bindMigrationAwareSqlAdapterFactory(factory), closeAll };
}

function createNoDatabaseFactory({ bindMigrationAwareSqlAdapterFactory, ColumnTypeEnum: ColumnType }) {
  const missing = async () => {
    throw new UserFacingError('P1012', 'This command needs a database: set DATABASE_URL (datasource.url in prisma.config.ts).');
  };
  const adapter = {
    provider: 'postgres',
    adapterName: '@prisma/adapter-pg',
    // The engine asks the server's version before any diff; schema-to-schema diffs need nothing
    // else, so that one probe gets a plain PostgreSQL answer.
    queryRaw: async (query) => {
      if (!/server_version_num/.test(query.sql)) return missing();
      return {
        columnNames: ['exists', 'version', 'numeric_version'],
        columnTypes: [ColumnType.Boolean, ColumnType.Text, ColumnType.Int32],
        rows: [[true, 'PostgreSQL 16.0 (no database configured)', 160000]],
      };
    },
    executeRaw: missing,
    executeScript: missing,
    startTransaction: missing,
    getConnectionInfo: () => ({ schemaName: 'public', supportsRelationJoins: true }),
    dispose: async () => {},
  };
  const factory = {
    provider: 'postgres',
    adapterName: '@prisma/adapter-pg',
    connect: async () => adapter,
    connectToShadowDb: missing,
  };
  return { bound: bindMigrationAwareSqlAdapterFactory(factory), closeAll: async () => {} };
}

/** Per-instance fixes on a connected PrismaPg adapter (see the header: fix 1 and scripts). */
function patchAdapter(adapter, ColumnType) {
  const patchQueryable = (q) => {
    const { queryRaw, performIO } = q;
    q.queryRaw = async (query) => {
      // The adapter throws on Postgres's one-byte "char" type (pg_constraint.contype and other
      // catalog columns the engine reads). Let it see text for those columns, then report them as
      // the engine's Character type, which is what the engine reads them as. Per call, through a
      // view of the queryable, so concurrent queries do not share state.
      const charColumns = [];
      const view = Object.create(q, {
        performIO: {
          value: async (query2) => {
            const result = await performIO.call(q, query2);
            result?.fields?.forEach((field, i) => {
              if (field.dataTypeID === OID_CHAR) {
                field.dataTypeID = OID_TEXT;
                charColumns.push(i);
              }
            });
            return result;
          },
        },
      });
      const result = await queryRaw.call(view, query);
      for (const i of charColumns) result.columnTypes[i] = ColumnType.Character;
      return result;
    };
    return q;
  };
  patchQueryable(adapter);
  const startTransaction = adapter.startTransaction.bind(adapter);
  adapter.startTransaction = async (...a) => patchQueryable(await startTransaction(...a));
  // A migration script goes to the server whole, over the simple query protocol, as the native
  // engine sends it.
  adapter.executeScript = async (script) => {
    try {
      await adapter.client.query(script);
    } catch (err) {
      adapter.onError(err);
    }
  };
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC server

const PASSTHROUGH_METHODS = new Set([
  'applyMigrations',
  'createMigration',
  'dbExecute',
  'devDiagnostic',
  'diagnoseMigrationHistory',
  'ensureConnectionValidity',
  'evaluateDataLoss',
  'introspect',
  'introspectSql',
  'markMigrationApplied',
  'markMigrationRolledBack',
  'reset',
  'schemaPush',
  'diff',
]);

async function runRpcServer(args) {
  let panicMessage;
  globalThis.PRISMA_WASM_PANIC_REGISTRY = {
    set_message(message) {
      panicMessage = `RuntimeError: ${message}`;
      process.stderr.write(`${JSON.stringify({ level: 'ERROR', fields: { message: panicMessage }, target: 'schema_engine_wasm::panic' })}\n`);
    },
  };

  const datamodels = args.datamodels.map((file) => [file, fs.readFileSync(file, 'utf8')]);
  const url = args.datasource?.url;
  const log = (line) => process.stderr.write(`${line}\n`);

  let enginePromise;
  let adapters;
  let nextPrintId = 1_000_000_000;
  const engine = () =>
    (enginePromise ??= (async () => {
      const [wasm, modules] = await Promise.all([loadWasmEngine(), loadAdapterModules()]);
      // Without a URL the engine still serves what needs no database (`migrate diff` between
      // schema files); anything else fails with a clear message on its first query.
      adapters = url ? createAdapterFactory(modules, args.datasource) : createNoDatabaseFactory(modules);
      const options = { datamodels: datamodels.length > 0 ? datamodels : undefined };
      const instance = await wasm.SchemaEngine.new(options, log, adapters.bound);
      return { instance, wasm, errorRegistry: adapters.bound.errorRegistry };
    })());

  async function handle(method, params) {
    switch (method) {
      case 'createDatabase': {
        const dsUrl = datasourceUrl(params?.datasource) ?? url;
        return { databaseName: await createDatabase({ url: dsUrl }) };
      }
      case 'dropDatabase':
        await dropDatabase({ url: datasourceUrl(params) ?? url });
        return null;
      case 'getDatabaseVersion':
      case 'version': {
        const { instance } = await engine();
        return instance.version(params ?? null);
      }
      case 'debugPanic': {
        const { instance } = await engine();
        return instance.debugPanic();
      }
      default: {
        if (!PASSTHROUGH_METHODS.has(method)) {
          const e = new Error(`Method not found: ${method}`);
          e.rpcCode = -32601;
          throw e;
        }
        const { instance } = await engine();
        // Called on the instance: wasm-bindgen methods lose their binding when detached.
        const call = async () => {
          const result = await instance[method](params ?? {});
          if (method === 'diff' && result?.stdout) {
            // The native engine hands `migrate diff` output to the CLI as a `print` request.
            await write({ jsonrpc: '2.0', id: nextPrintId++, method: 'print', params: { content: result.stdout.replace(/\n$/, '') } });
            return { ...result, stdout: null };
          }
          return result;
        };
        try {
          return (await call()) ?? null;
        } catch (err) {
          if (!needsShadowFactory(err) || !params?.migrationsList) throw err;
          // evaluateDataLoss and createMigration replay the migration history through the
          // engine's schema cache, and on a cache miss they ask the connector itself for a shadow
          // database, which the wasm connector cannot make. diagnoseMigrationHistory replays the
          // same (fully applied) history through the adapter factory and fills that cache.
          await instance.diagnoseMigrationHistory({
            migrationsList: params.migrationsList,
            optInToShadowDatabase: true,
            filters: params.filters ?? { externalTables: [], externalEnums: [] },
          });
          return (await call()) ?? null;
        }
      }
    }
  }

  function errorResponse(id, err) {
    if (err?.rpcCode) return { jsonrpc: '2.0', id, error: { code: err.rpcCode, message: err.message } };
    if (panicMessage || err instanceof WebAssembly.RuntimeError) {
      const message = panicMessage ?? String(err?.message ?? err);
      return {
        jsonrpc: '2.0',
        id,
        error: { code: RPC_ENGINE_ERROR, message, data: { is_panic: true, message, backtrace: err?.stack ?? null } },
      };
    }
    err = originalError(err);
    const data = { is_panic: false, message: String(err?.message ?? err), backtrace: null };
    if (typeof err?.code === 'string' && /^P\d{4}$/.test(err.code)) {
      data.error_code = err.code;
      data.meta = err.meta ?? null;
    }
    data.message = redact(data.message, url);
    return { jsonrpc: '2.0', id, error: { code: RPC_ENGINE_ERROR, message: 'An error happened. Check the data field for details.', data } };
  }

  /** JS errors raised inside the adapter reach the engine as ids into the adapter's registry. */
  function originalError(err) {
    const m = /External error id#(\d+)/.exec(String(err?.message ?? ''));
    const found = m ? adapters?.bound.errorRegistry.consumeError?.(Number(m[1]))?.error : undefined;
    return found ?? err;
  }

  const write = (msg) =>
    new Promise((resolve) => {
      process.stdout.write(`${JSON.stringify(msg, jsonReplacer)}\n`, resolve);
    });

  // One request at a time: the wasm engine's methods borrow it mutably.
  let queue = Promise.resolve();
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  rl.on('line', (line) => {
    if (!line.trim()) return;
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      queue = queue.then(() => write({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } }));
      return;
    }
    if (msg.id === undefined || msg.id === null) return; // a notification or a response: nothing to answer
    if (!msg.method) return;
    queue = queue.then(async () => {
      let response;
      inFlight = msg.id;
      try {
        response = { jsonrpc: '2.0', id: msg.id, result: await handle(msg.method, msg.params) };
      } catch (err) {
        response = errorResponse(msg.id, err);
      }
      inFlight = undefined;
      await write(response);
      if (response.error?.data?.is_panic) await shutdown(EXIT_PANIC);
    });
  });

  // A panic inside a callback from the database driver surfaces here instead of as a rejected
  // call: answer the pending request with it, as the native engine reports panics, and stop.
  let inFlight;
  process.on('uncaughtException', (err) => {
    const id = inFlight;
    inFlight = undefined;
    const response = errorResponse(id ?? null, err instanceof WebAssembly.RuntimeError || panicMessage ? err : Object.assign(new WebAssembly.RuntimeError(String(err?.message ?? err)), { stack: err?.stack }));
    const done = () => void shutdown(EXIT_PANIC); // still drops the shadow databases made here
    if (id === undefined) done();
    else process.stdout.write(`${JSON.stringify(response, jsonReplacer)}\n`, done);
  });

  let closing = false;
  async function shutdown(code) {
    if (closing) return;
    closing = true;
    try {
      if (enginePromise) {
        const e = await enginePromise.catch(() => undefined);
        if (e && !panicMessage) {
          try {
            e.instance.free();
          } catch {
            // already freed or poisoned by a panic
          }
        }
      }
      await Promise.race([adapters?.closeAll(), new Promise((r) => setTimeout(r, 5000).unref())]);
    } finally {
      process.exit(code);
    }
  }

  rl.on('close', () => {
    queue = queue.then(() => shutdown(0));
  });
  // The CLI closes stdin and then sends SIGTERM straight away: still close pools and drop any
  // shadow database an interrupted command left behind.
  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => void shutdown(0));
  process.stdout.on('error', () => {}); // the CLI may be gone already
}

function needsShadowFactory(err) {
  return /shadow DB must be provided through an external factory/.test(String(err?.message ?? ''));
}

function datasourceUrl(param) {
  if (!param) return undefined;
  if (typeof param.url === 'string') return param.url;
  if (param.tag === 'ConnectionString') return param.url;
  return undefined;
}

function jsonReplacer(_key, value) {
  if (value instanceof Map) return Object.fromEntries(value);
  if (typeof value === 'bigint') return Number(value);
  return value;
}

// ---------------------------------------------------------------------------------------------

const args = parseArgs(process.argv.slice(2));
if (args.version) {
  const wasm = await loadWasmEngine();
  process.stdout.write(`schema-engine-wasm ${wasm.version()}\n`);
} else if (args.help) {
  process.stdout.write('Prisma schema engine stand-in (WebAssembly engine over @prisma/adapter-pg). Spawned by the Prisma CLI.\n');
} else if (args.cli) {
  process.exitCode = await runCliCommand(args);
} else {
  await runRpcServer(args);
}
