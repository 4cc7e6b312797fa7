/**
 * Device identity from a certificate: a profile picks a source (subject CN, a SAN URI below a
 * prefix, or a SAN DNS name) and a regular expression whose capture group 1 (or the whole match)
 * is the device name. Patterns are RE2 expressions run by re2js, an automaton engine that never
 * backtracks: a match costs time linear in the input, whatever the pattern. RE2 has no
 * backreferences and no lookaround, the two constructs that need backtracking; a pattern using
 * them is refused when a profile is written. Both the pattern's compiled size and the input's
 * length are capped, so one match has a small fixed worst case on the hot path.
 */
import { RE2JS, RE2JSException, RE2JSSyntaxException } from 're2js';
import type { ParsedCertificate } from './certificate.js';

export type IdentitySource = 'COMMON_NAME' | 'SAN_URI' | 'SAN_DNS';

export interface IdentityRule {
  source: IdentitySource;
  pattern: string;
  /** SAN_URI only: the URI must start with this prefix; the pattern applies to the rest. */
  uriPrefix?: string;
}

/** Longest source value a pattern is ever run on; longer values match nothing. */
export const MAX_IDENTITY_INPUT = 1024;
export const MAX_PATTERN_LENGTH = 512;
/**
 * Largest compiled program (RE2's "program size", about one instruction per character to match)
 * a pattern may have. Matching costs input length times program size at worst: at this bound a
 * 1,024-character value costs ~15 ms and a 64-character CN well under 1 ms. Real patterns are
 * far smaller (`^(.+)$` is 8, `^[a-z0-9-]{1,64}$` 131); `.{0,1000}` alone is 2,002.
 */
export const MAX_PATTERN_PROGRAM_SIZE = 500;

export type CompiledPattern = { ok: true; re: RE2JS } | { ok: false; message: string };

const compiled = new Map<string, CompiledPattern>();

/** Compiles (once) a pattern under the rules a profile write enforces. */
export function compileIdentityPattern(pattern: string): CompiledPattern {
  let c = compiled.get(pattern);
  if (!c) {
    c = compileUncached(pattern);
    if (compiled.size >= 1000) compiled.clear();
    compiled.set(pattern, c);
  }
  return c;
}

function compileUncached(pattern: string): CompiledPattern {
  if (typeof pattern !== 'string' || pattern.length === 0) return { ok: false, message: 'pattern must be a non-empty string' };
  if (pattern.length > MAX_PATTERN_LENGTH) return { ok: false, message: `pattern is longer than ${MAX_PATTERN_LENGTH} characters` };
  // Compiling costs time in the size of the program it builds: estimated from the text first, so
  // a short pattern that counts to thousands (`(.{1,1000}){9}`-like) is refused without building it.
  const estimate = expandedSize(pattern);
  if (estimate > MAX_PATTERN_PROGRAM_SIZE) return tooLarge(`about ${Math.min(estimate, 1e9)} elements`);
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern);
  } catch (e) {
    return { ok: false, message: syntaxMessage(pattern, e) };
  }
  const size = re.programSize();
  if (size > MAX_PATTERN_PROGRAM_SIZE) return tooLarge(`${size} RE2 instructions`);
  return { ok: true, re };
}

function tooLarge(what: string): CompiledPattern {
  return {
    ok: false,
    message:
      `pattern is too large: it expands to ${what}, more than ${MAX_PATTERN_PROGRAM_SIZE} ` +
      '(counted repetitions such as .{0,1000} or (x{10}){10} are expanded)',
  };
}

/**
 * Roughly the number of elements a pattern expands to once counted repetitions are unrolled, as
 * RE2's compiler unrolls them: each literal, escape or class counts one, a group the sum of its
 * contents, and `{n,m}` multiplies what it follows by its upper bound. Malformed text is left for
 * the parser to refuse.
 */
export function expandedSize(pattern: string): number {
  const outer: number[] = [];
  let total = 0;
  let last = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '(') {
      outer.push(total);
      total = 0;
      continue;
    }
    if (c === ')') {
      last = total;
      total = (outer.pop() ?? 0) + last;
      continue;
    }
    if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i, i + 24));
      if (m) {
        const upper = m[2] === undefined ? Number(m[1]) : m[3] ? Number(m[3]) : Number(m[1]) + 1;
        total += last * (Math.max(upper, 1) - 1);
        last *= Math.max(upper, 1);
        i += m[0].length - 1;
        continue;
      }
    }
    if (c === '*' || c === '+' || c === '?' || c === '|') continue;
    if (c === '\\') i = skipEscape(pattern, i);
    else if (c === '[') i = skipClass(pattern, i);
    total += 1;
    last = 1;
  }
  return outer.reduce((a, b) => a + b, total);
}

/** Index of the last character of the escape starting at `i` (`\d`, `\pL`, `\p{Greek}`, `\x{41}`). */
function skipEscape(p: string, i: number): number {
  const k = p[i + 1];
  if ((k === 'p' || k === 'P' || k === 'x') && p[i + 2] === '{') {
    const end = p.indexOf('}', i);
    return end < 0 ? p.length : end;
  }
  return i + 1;
}

/** Index of the `]` closing the class starting at `i`. */
function skipClass(p: string, i: number): number {
  let j = i + 1;
  if (p[j] === '^') j++;
  if (p[j] === ']') j++;
  while (j < p.length && p[j] !== ']') {
    if (p[j] === '\\') j = skipEscape(p, j);
    else if (p[j] === '[' && p[j + 1] === ':') {
      const end = p.indexOf(':]', j);
      if (end > 0) j = end + 1;
    }
    j++;
  }
  return j;
}

const RE2_REQUIRED = 'RE2 syntax is required (no backreferences, no lookaround)';

/** Names the construct RE2 refused, with a word on why for the two that cannot be supported. */
function syntaxMessage(pattern: string, e: unknown): string {
  const lookaround = /(?<!\\)\(\?<?[=!]/.exec(pattern);
  if (lookaround) return `${RE2_REQUIRED}: lookaround \`${lookaround[0]}\` is not supported`;
  if (e instanceof RE2JSSyntaxException) {
    const input = e.input ?? '';
    if (/^\\([1-9]|k)/.test(input)) return `${RE2_REQUIRED}: backreference \`${input}\` is not supported`;
    return `invalid regular expression, ${RE2_REQUIRED}: ${e.error}${input ? `: \`${input.slice(0, 60)}\`` : ''}`;
  }
  if (e instanceof RE2JSException) return `invalid regular expression, ${RE2_REQUIRED}: ${e.message}`;
  return `invalid regular expression, ${RE2_REQUIRED}`;
}

/**
 * Applies the pattern: capture group 1 when the pattern has one, else the whole match. A value
 * longer than MAX_IDENTITY_INPUT, or a pattern RE2 refuses (one stored before patterns were
 * checked as RE2), matches nothing.
 */
export function matchIdentity(value: string, pattern: string): string | null {
  if (value.length === 0 || value.length > MAX_IDENTITY_INPUT) return null;
  const c = compileIdentityPattern(pattern);
  if (!c.ok) return null;
  const m = c.re.matcher(value);
  if (!m.find()) return null;
  const name = c.re.groupCount() > 0 ? m.group(1) : m.group(0);
  return name ? name : null;
}

/** The source values a rule looks at, in certificate order. */
export function identityCandidates(cert: ParsedCertificate, rule: IdentityRule): string[] {
  switch (rule.source) {
    case 'COMMON_NAME':
      return cert.commonName !== null ? [cert.commonName] : [];
    case 'SAN_DNS':
      return [...cert.san.dns];
    case 'SAN_URI': {
      const prefix = rule.uriPrefix ?? '';
      // amqtt's rule: the first URI SAN with the prefix, the pattern applied to what follows it.
      const uri = cert.san.uri.find((u) => u.startsWith(prefix) && u.length > prefix.length);
      return uri === undefined ? [] : [uri.slice(prefix.length)];
    }
    default:
      return [];
  }
}

/** The device name the rule extracts from `cert`, or null when it finds none. */
export function extractIdentity(cert: ParsedCertificate, rule: IdentityRule): string | null {
  for (const value of identityCandidates(cert, rule)) {
    const name = matchIdentity(value, rule.pattern);
    if (name !== null) return name;
  }
  return null;
}

export type RegexSafety = { ok: true } | { ok: false; message: string };

/**
 * Accepts a pattern a profile may store: RE2 syntax, at most MAX_PATTERN_LENGTH characters and
 * MAX_PATTERN_PROGRAM_SIZE compiled instructions. Compiling is linear in the pattern and takes
 * well under a millisecond, on the calling thread.
 */
export function checkRegexSafety(pattern: string): RegexSafety {
  const c = compileIdentityPattern(pattern);
  return c.ok ? { ok: true } : { ok: false, message: c.message };
}
