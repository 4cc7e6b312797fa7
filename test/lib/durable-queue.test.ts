/**
 * The durable queue keeps what it could not write and tries again in order; what it cannot keep
 * (over its limit, or unwritten when close stops waiting) is reported, once per burst.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDurableQueue, type Batch } from '../../src/lib/durable-queue.js';

/** A writer that fails while `down` is set, and records every batch it took. */
function store() {
  const s = {
    down: false,
    attempts: 0,
    written: [] as number[],
    batchIds: [] as string[],
    async write(batch: Batch<number>) {
      s.attempts++;
      await new Promise((r) => setImmediate(r));
      if (s.down) throw new Error('database away');
      s.written.push(...batch.items);
      s.batchIds.push(batch.id);
    },
  };
  return s;
}

const until = async (probe: () => boolean, what: string) => {
  for (let i = 0; i < 400; i++) {
    if (probe()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`${what} not reached within 4 s`);
};

test('ok/outage: a failed batch is kept and tried again, before newer items, with the same id', async () => {
  const s = store();
  const errors: number[] = [];
  const recovered: number[] = [];
  const q = createDurableQueue<number>((b) => s.write(b), {
    intervalMs: 5,
    maxBatch: 3,
    retryMs: 5,
    maxRetryMs: 20,
    onError: (_err, failures) => errors.push(failures),
    onRecovered: (failures) => recovered.push(failures),
  });
  s.down = true;
  for (let i = 0; i < 5; i++) q.add(i);
  await until(() => errors.length >= 3, 'three failed attempts');
  for (let i = 5; i < 8; i++) q.add(i);
  assert.equal(q.waiting, 8);
  s.down = false;
  await until(() => q.waiting === 0, 'everything written');
  assert.deepEqual(s.written, [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(errors.slice(0, 3), [1, 2, 3], 'failures counted in a row');
  assert.equal(recovered.length, 1);
  assert.equal(new Set(s.batchIds).size, s.batchIds.length, 'one id per batch');
  await q.close();
});

test('fail/full: items beyond the limit are dropped and reported, the first of a burst marked', async () => {
  const s = store();
  const drops: Array<[number, string, boolean]> = [];
  const q = createDurableQueue<number>((b) => s.write(b), {
    intervalMs: 5,
    limit: 4,
    retryMs: 5,
    maxRetryMs: 10,
    onDropped: (n, why, first) => drops.push([n, why, first]),
  });
  s.down = true;
  for (let i = 0; i < 7; i++) q.add(i);
  assert.equal(q.waiting, 4);
  assert.deepEqual(drops, [
    [1, 'full', true],
    [1, 'full', false],
    [1, 'full', false],
  ]);
  s.down = false;
  await until(() => q.waiting === 0, 'the kept items written');
  assert.deepEqual(s.written, [0, 1, 2, 3]);
  // A write succeeded: the next drop starts a new burst.
  s.down = true;
  for (let i = 0; i < 5; i++) q.add(10 + i);
  assert.deepEqual(drops.at(-1), [1, 'full', true]);
  s.down = false;
  await q.close(2_000);
  assert.deepEqual(s.written, [0, 1, 2, 3, 10, 11, 12, 13]);
});

test('ok/close: close writes what waits, trying again while the database comes back within its wait', async () => {
  const s = store();
  const q = createDurableQueue<number>((b) => s.write(b), { intervalMs: 60_000, retryMs: 5, maxRetryMs: 20 });
  for (let i = 0; i < 10; i++) q.add(i);
  s.down = true;
  setTimeout(() => (s.down = false), 100);
  await q.close(5_000);
  assert.deepEqual(s.written, [...Array(10).keys()]);
  assert.ok(s.attempts > 1, 'tried more than once');
});

test('fail/close: what is unwritten when close stops waiting is dropped and reported', async () => {
  const s = store();
  const drops: Array<[number, string, boolean]> = [];
  const q = createDurableQueue<number>((b) => s.write(b), {
    intervalMs: 60_000,
    retryMs: 5,
    maxRetryMs: 20,
    onDropped: (n, why, first) => drops.push([n, why, first]),
  });
  for (let i = 0; i < 10; i++) q.add(i);
  s.down = true;
  await q.close(100);
  assert.deepEqual(drops, [[10, 'shutdown', true]]);
  assert.equal(q.waiting, 0);
  q.add(99);
  assert.deepEqual(drops.at(-1), [1, 'shutdown', true], 'an item after close is reported too');
  assert.deepEqual(s.written, []);
});

test('ok/flush: flush writes what waits without waiting for the timer, and returns when an attempt fails', async () => {
  const s = store();
  const q = createDurableQueue<number>((b) => s.write(b), { intervalMs: 60_000, maxBatch: 4, retryMs: 60_000 });
  for (let i = 0; i < 10; i++) q.add(i);
  await q.flush();
  assert.deepEqual(s.written, [...Array(10).keys()]);
  s.down = true;
  q.add(10);
  await q.flush();
  assert.equal(q.waiting, 1, 'kept after the failed attempt');
  s.down = false;
  await q.flush();
  assert.deepEqual(s.written, [...Array(11).keys()]);
  await q.close();
});
