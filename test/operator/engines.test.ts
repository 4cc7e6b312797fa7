/**
 * `npm ci` warns `EBADENGINE` for every locked package whose `engines.node` does not accept the
 * running Node. certgate supports the Node versions of its own `engines.node` (20.19 and later), so
 * every package in package-lock.json must accept the oldest of them, and the Node the npm scripts
 * run on (the `node` devDependency). npm compares the same way (`semver.satisfies` with
 * prereleases included) and ignores the old list form of `engines` (`["node >= 6"]`).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, test } from 'node:test';
import { REPO } from '../helpers/service.js';

interface Semver {
  minVersion(range: string): { version: string } | null;
  satisfies(version: string, range: string, options?: { includePrerelease?: boolean }): boolean;
  validRange(range: string): string | null;
}
// semver comes with fastify; it is the module npm itself checks engines with.
const semver = createRequire(import.meta.url)('semver') as Semver;

interface Locked {
  version?: string;
  engines?: Record<string, string> | string[];
}

async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await fs.readFile(path.join(REPO, file), 'utf8')) as T;
}

describe('package-lock.json', () => {
  test('every locked package accepts the Node versions certgate supports', async () => {
    const pkg = await readJson<{ engines: { node: string }; devDependencies: Record<string, string> }>('package.json');
    const lock = await readJson<{ packages: Record<string, Locked> }>('package-lock.json');
    const oldest = semver.minVersion(pkg.engines.node)?.version;
    assert.ok(oldest, `package.json engines.node is a range: ${pkg.engines.node}`);
    const scripts = lock.packages['node_modules/node']?.version;
    assert.ok(scripts, 'the node devDependency is locked');
    assert.ok(semver.satisfies(scripts, pkg.devDependencies.node), 'the locked node devDependency is the one package.json asks for');

    const refused: string[] = [];
    let checked = 0;
    for (const [where, entry] of Object.entries(lock.packages)) {
      if (where === '' || !entry.engines || Array.isArray(entry.engines)) continue;
      const range = entry.engines.node;
      if (range === undefined) continue;
      checked++;
      for (const node of [oldest, scripts]) {
        if (!semver.satisfies(node, range, { includePrerelease: true })) {
          refused.push(`${where}@${entry.version} wants node ${range}, not ${node}`);
        }
      }
    }
    assert.ok(checked > 50, `engines of many packages were checked (${checked})`);
    assert.deepEqual(refused, [], 'packages whose engines refuse a supported Node (npm ci warns EBADENGINE)');
  });

  test('each override names a version the lockfile holds', async () => {
    const pkg = await readJson<{ overrides?: Record<string, string> }>('package.json');
    const lock = await readJson<{ packages: Record<string, Locked> }>('package-lock.json');
    for (const [name, version] of Object.entries(pkg.overrides ?? {})) {
      const locked = Object.entries(lock.packages).filter(([where]) => where.endsWith(`node_modules/${name}`));
      assert.ok(locked.length > 0, `${name} is in the lockfile`);
      for (const [where, entry] of locked) assert.equal(entry.version, version, `${where} is the overridden ${version}`);
    }
  });
});
