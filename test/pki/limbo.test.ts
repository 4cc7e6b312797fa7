import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DELIBERATE, LIMBO_PATH, runLimbo } from '../../scripts/conformance.js';

/** Agreement measured when this floor was set; raise it when the score improves. */
const FLOOR = 168;

describe('x509-limbo conformance', { skip: !existsSync(LIMBO_PATH) && `no ${LIMBO_PATH}` }, () => {
  it(`agrees with at least ${FLOOR} of the 176 name-agnostic cases`, () => {
    const report = runLimbo();
    assert.equal(report.total, 176);
    assert.ok(report.agree >= FLOOR, `limbo: ${report.agree}/${report.total} agree (floor ${FLOOR})`);
  });

  it('every disagreement is a documented, deliberate one', () => {
    const unexpected = runLimbo().disagreements.filter((d) => !DELIBERATE[d.id]);
    assert.deepEqual(unexpected.map((d) => `${d.id}: ${d.why}`), []);
  });
});
