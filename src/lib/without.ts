/**
 * A measurement switch, not for production: `CERTGATE_WITHOUT` names mechanisms of the verifier's
 * hot path to turn off, comma-separated (`all` for every one), so that a benchmark can measure
 * what each one buys (bench/verifier.ts, `BENCH_WITHOUT`). Off, each takes the simplest path that
 * decides the same:
 *   decision-cache        every request is decided in full (no decision kept for a known chain);
 *   credential-index      every new leaf is looked up among the device credentials in the database.
 * Read once, when this module is loaded (at start); an unknown name stops the start.
 */
export const MECHANISMS = ['decision-cache', 'credential-index'] as const;

export type Mechanism = (typeof MECHANISMS)[number];

/** The mechanisms a `CERTGATE_WITHOUT` value names; throws on a name that is none of them. */
export function parseWithout(value: string | undefined, setting = 'CERTGATE_WITHOUT'): Set<Mechanism> {
  const names = (value ?? '')
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  if (names.includes('all')) return new Set(MECHANISMS);
  const unknown = names.filter((n) => !(MECHANISMS as readonly string[]).includes(n));
  if (unknown.length) {
    throw new Error(`${setting}: unknown mechanism ${unknown.map((n) => `"${n}"`).join(', ')}; known: all, ${MECHANISMS.join(', ')}`);
  }
  return new Set(names as Mechanism[]);
}

const off = parseWithout(process.env.CERTGATE_WITHOUT);

/** Whether `mechanism` was turned off for a measurement. */
export function without(mechanism: Mechanism): boolean {
  return off.has(mechanism);
}
