/**
 * Device identity from a certificate: a profile picks a source (subject CN, a SAN
 * URI below a prefix, or a SAN DNS name) and a regular expression whose capture group 1 (or the
 * whole match) is the device name. Patterns are checked for catastrophic backtracking when a
 * profile is written, and inputs are capped in length, so matching is cheap on the hot path.
 */
import { createRequire } from 'node:module';
import type { ParsedCertificate } from './certificate.js';

export type IdentitySource = 'COMMON_NAME' | 'SAN_URI' | 'SAN_DNS';

export interface IdentityRule {
  source: IdentitySource;
  pattern: string;
  /** SAN_URI only: the URI must start with this prefix; the pattern applies to the rest. */
  uriPrefix?: string;
}

/** Longest source value a pattern is ever run on (a defence in depth next to the safety check). */
export const MAX_IDENTITY_INPUT = 1024;
export const MAX_PATTERN_LENGTH = 512;

const compiled = new Map<string, RegExp>();

function compile(pattern: string): RegExp {
  let re = compiled.get(pattern);
  if (!re) {
    re = new RegExp(pattern);
    if (compiled.size > 1000) compiled.clear();
    compiled.set(pattern, re);
  }
  return re;
}

/** Applies the pattern: capture group 1 when the pattern has one, else the whole match. */
export function matchIdentity(value: string, pattern: string): string | null {
  if (value.length === 0 || value.length > MAX_IDENTITY_INPUT) return null;
  let re: RegExp;
  try {
    re = compile(pattern);
  } catch {
    return null;
  }
  const m = re.exec(value);
  if (!m) return null;
  const name = m.length > 1 ? m[1] : m[0];
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

// ---------------------------------------------------------------------------------------------
// Regex safety

export type RegexSafety = { ok: true } | { ok: false; message: string };

interface RecheckDiagnostics {
  status: 'safe' | 'vulnerable' | 'unknown';
  complexity?: { type: string; degree?: number; summary?: string };
  error?: { kind: string; message?: string };
}

type CheckSync = (source: string, flags: string, params?: Record<string, unknown>) => RecheckDiagnostics;

let recheck: CheckSync | null | undefined;

function loadRecheck(): CheckSync | null {
  if (recheck === undefined) {
    try {
      const mod = createRequire(import.meta.url)('recheck') as { checkSync: CheckSync };
      recheck = mod.checkSync;
    } catch {
      recheck = null;
    }
  }
  return recheck;
}

/** Time allowed to the ReDoS analysis of one pattern (profile writes only, never per connection). */
export const REGEX_CHECK_TIMEOUT_MS = 3000;

/**
 * Accepts a pattern only if it compiles as a JavaScript regular expression and cannot backtrack
 * catastrophically. The analysis is recheck's (automata-based, with fuzzing as fallback; measured
 * here ~1-5 ms per pattern after a ~100 ms first start of its native helper). Exponential and
 * cubic-or-worse patterns are refused; quadratic ones are accepted because inputs are capped at
 * MAX_IDENTITY_INPUT characters (measured worst case under 1 ms). When recheck cannot decide, a
 * structural check refuses nested quantifiers; an analysis timeout is a refusal.
 */
export function checkRegexSafety(pattern: string): RegexSafety {
  if (typeof pattern !== 'string' || pattern.length === 0) return { ok: false, message: 'pattern must be a non-empty string' };
  if (pattern.length > MAX_PATTERN_LENGTH) return { ok: false, message: `pattern is longer than ${MAX_PATTERN_LENGTH} characters` };
  try {
    new RegExp(pattern);
  } catch (e) {
    return { ok: false, message: `invalid regular expression: ${(e as Error).message}` };
  }
  const check = loadRecheck();
  let diag: RecheckDiagnostics | null = null;
  if (check) {
    try {
      diag = check(pattern, '', { timeout: REGEX_CHECK_TIMEOUT_MS });
    } catch {
      diag = null;
    }
  }
  if (diag?.status === 'safe') return { ok: true };
  if (diag?.status === 'vulnerable') {
    const c = diag.complexity;
    if (c?.type === 'polynomial' && (c.degree ?? 99) <= 2) return { ok: true };
    return { ok: false, message: `pattern may backtrack catastrophically (${c?.summary ?? c?.type ?? 'super-linear'} time)` };
  }
  if (diag?.status === 'unknown' && diag.error?.kind === 'timeout') {
    return { ok: false, message: 'pattern is too complex to prove safe from catastrophic backtracking' };
  }
  return nestedQuantifierCheck(pattern);
}

/**
 * Fallback when recheck cannot analyse a pattern: refuse a quantified group that itself contains
 * a quantifier (star height above one), the shape of `(a+)+` and `(\w+\s?)*`.
 */
export function nestedQuantifierCheck(pattern: string): RegexSafety {
  const stack: boolean[] = [];
  let inner = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '[') {
      while (i < pattern.length && pattern[i] !== ']') i += pattern[i] === '\\' ? 2 : 1;
      continue;
    }
    if (c === '(') {
      stack.push(inner);
      inner = false;
      continue;
    }
    if (c === ')') {
      const groupHasQuantifier: boolean = inner;
      inner = stack.pop() ?? false;
      const next = pattern[i + 1];
      const quantified = next === '*' || next === '+' || next === '{';
      if (quantified && groupHasQuantifier) {
        return { ok: false, message: 'pattern nests quantifiers and may backtrack catastrophically' };
      }
      inner = inner || groupHasQuantifier || quantified;
      continue;
    }
    if (c === '*' || c === '+' || c === '{') inner = true;
  }
  return { ok: true };
}
