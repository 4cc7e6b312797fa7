// Prisma CLI configuration (Prisma 7). See docs/prisma-offline.md.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'prisma/config';

const root = path.dirname(fileURLToPath(import.meta.url));

// The CLI's `generate`, `migrate` and `db` commands need a schema engine. Prisma downloads a native
// one, which machines without internet access cannot do; this repo ships a stand-in that runs the
// WebAssembly build of the same engine over the `pg` driver. A binary the user names explicitly
// (PRISMA_SCHEMA_ENGINE_BINARY) wins.
if (!process.env.PRISMA_SCHEMA_ENGINE_BINARY) {
  const engine = path.join(root, 'scripts', 'prisma-schema-engine.mjs');
  try {
    // The CLI spawns the engine as a program: it must be executable (a fresh checkout may not be).
    if ((fs.statSync(engine).mode & 0o111) !== 0o111) fs.chmodSync(engine, 0o755);
  } catch {
    // a read-only tree: the mode from git is already right
  }
  process.env.PRISMA_SCHEMA_ENGINE_BINARY = engine;
}

export default defineConfig({
  schema: path.join(root, 'prisma', 'schema.prisma'),
  migrations: {
    path: path.join(root, 'prisma', 'migrations'),
  },
  // No URL is needed by `prisma generate` (it runs on `npm ci`, where DATABASE_URL is usually
  // unset); migrate and db commands report a missing DATABASE_URL themselves.
  datasource: {
    url: process.env.DATABASE_URL,
    shadowDatabaseUrl: process.env.SHADOW_DATABASE_URL || undefined,
  },
});
