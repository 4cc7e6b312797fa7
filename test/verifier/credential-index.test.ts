/**
 * The verifier's in-memory credential index, without a database: the index may answer "maybe"
 * for anything, but never "no" for a credential that exists once a load has finished or an event
 * has named it.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { createCredentialIndex, FingerprintSet } from '../../src/verifier/credential-index.js';

const id = () => crypto.randomBytes(32).toString('hex');
const tick = () => new Promise((r) => setImmediate(r));

/** A credential table in memory, paged by key like the repository. */
function table(rows: Array<{ id: string; tenantId: string }>) {
  let calls = 0;
  let gate: Promise<void> = Promise.resolve();
  return {
    rows,
    get calls() {
      return calls;
    },
    hold(): () => void {
      let release!: () => void;
      gate = new Promise((r) => (release = r));
      return release;
    },
    async load(after: string, limit: number, tenantId?: string): Promise<string[]> {
      calls++;
      await gate;
      return rows
        .filter((r) => (!tenantId || r.tenantId === tenantId) && r.id > after)
        .map((r) => r.id)
        .sort()
        .slice(0, limit);
    },
  };
}

test('FingerprintSet: every added id is found after growth; unknown ids are not', () => {
  const set = new FingerprintSet(4);
  const ids = Array.from({ length: 50_000 }, id);
  for (const i of ids) set.add(i);
  // 32-bit fingerprints: two of 50,000 random ids share one about a quarter of the time, and
  // count once; the set only ever answers "maybe", so that costs a database lookup, nothing more.
  assert.ok(set.size >= 49_990 && set.size <= 50_000, `size ${set.size}`);
  for (const i of ids) assert.equal(set.has(i), true);
  let falsePositives = 0;
  for (let n = 0; n < 50_000; n++) if (set.has(id())) falsePositives++;
  // Expected 50,000 x 50,000 / 2^32 = 0.58; more than 6 happens about once in a million runs
  // (at most 2, as this said before, failed about one run in fifty).
  assert.ok(falsePositives <= 6, `${falsePositives} false positives`);
  // Not hex at all (the index is only ever asked about SHA-256 ids, but must not break).
  set.add('zz');
  assert.equal(set.has('zz'), true);
});

test('credential index: "maybe" until loaded, then exact; ids named by events are known at once', async () => {
  const t = table(Array.from({ length: 45_000 }, () => ({ id: id(), tenantId: 't1' })));
  const index = createCredentialIndex((a, l, tid) => t.load(a, l, tid));
  const stranger = id();
  assert.equal(index.mayContain(stranger), true, 'nothing loaded yet: maybe');
  while (!index.ready) await tick();
  assert.ok(t.calls >= 3, 'loaded in pages');
  for (const r of t.rows) assert.equal(index.mayContain(r.id), true);
  assert.equal(index.mayContain(stranger), false);
  const added = id();
  index.add([added]);
  assert.equal(index.mayContain(added), true);
});

test('credential index: an id announced while the first load runs is not lost', async () => {
  const t = table([{ id: id(), tenantId: 't1' }]);
  const release = t.hold();
  const index = createCredentialIndex((a, l, tid) => t.load(a, l, tid));
  index.mayContain(id()); // starts the load, which waits
  const announced = id();
  index.add([announced]);
  release();
  while (!index.ready) await tick();
  assert.equal(index.mayContain(announced), true);
});

test('credential index: a change without ids answers "maybe" until the tenant is reloaded', async () => {
  const t = table([{ id: id(), tenantId: 't1' }]);
  const index = createCredentialIndex((a, l, tid) => t.load(a, l, tid));
  index.mayContain(id());
  while (!index.ready) await tick();
  const later = id();
  t.rows.push({ id: later, tenantId: 't2' });
  const release = t.hold();
  index.tenantChanged('t2');
  assert.equal(index.mayContain(id()), true, 'reloading: maybe');
  release();
  while (!index.ready) await tick();
  assert.equal(index.mayContain(later), true);
  assert.equal(index.mayContain(id()), false);
});

test('credential index: a failed load keeps answering "maybe"; a reset loads afresh', async () => {
  let fail = true;
  const t = table([{ id: id(), tenantId: 't1' }]);
  const errors: unknown[] = [];
  const index = createCredentialIndex(
    async (a, l, tid) => {
      if (fail) throw new Error('database down');
      return t.load(a, l, tid);
    },
    { onError: (e) => errors.push(e) },
  );
  index.mayContain(id());
  await tick();
  await tick();
  assert.equal(errors.length, 1);
  assert.equal(index.mayContain(id()), true);
  fail = false;
  index.reset();
  index.mayContain(id());
  while (!index.ready) await tick();
  assert.equal(index.mayContain(t.rows[0]!.id), true);
  assert.equal(index.mayContain(id()), false);
});
