#!/usr/bin/env node
/**
 * `postinstall`: `prisma generate`, unless src/generated/prisma already holds the client of this
 * very schema made by this very Prisma. npm runs postinstall again whenever it re-installs the
 * project, including on the first `npx certgate` after `npm ci` (it finds node_modules newer than
 * its own record of them); regenerating then would delete and rewrite the client under any
 * certgate process starting at that moment. `npx prisma generate` always regenerates.
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const output = path.join(root, 'src', 'generated', 'prisma');
const stamp = path.join(output, '.generated-from');
const read = (file) => fs.readFileSync(path.join(root, file));

const hash = crypto.createHash('sha256');
for (const file of ['prisma/schema.prisma', 'prisma.config.ts', 'node_modules/prisma/package.json', 'node_modules/@prisma/client/package.json']) {
  hash.update(file).update(read(file));
}
const digest = hash.digest('hex');

const current = fs.existsSync(path.join(output, 'client.ts')) && fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === digest;
if (current) {
  console.log('Prisma Client in src/generated/prisma is up to date');
} else {
  const cli = path.join(root, 'node_modules', 'prisma', 'build', 'index.js');
  // Prisma reads prisma.config.ts through jiti, whose cache would land in node_modules/.cache:
  // npm then takes node_modules for changed behind its back and re-installs on the next npx.
  const env = { ...process.env, JITI_FS_CACHE: 'false', JITI_CACHE: 'false' };
  const run = spawnSync(process.execPath, [cli, 'generate'], { cwd: root, stdio: 'inherit', env });
  if (run.status !== 0) process.exit(run.status ?? 1);
  fs.writeFileSync(stamp, digest);
}
