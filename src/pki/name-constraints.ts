/**
 * Name constraints (RFC 5280 4.2.1.10, applied as in 6.1.3 (b)-(c)): every name of a certificate
 * below a constrained CA must lie inside each permitted subtree of its form and outside every
 * excluded subtree. Checking each CA's constraints separately is equivalent to the RFC's running
 * intersection of permitted subtrees and union of excluded subtrees.
 */
import type { ParsedCertificate } from './certificate.js';
import { isValidHostName, type NameConstraints } from './extensions.js';
import { formatIp, isEmptyName, rdnKey, type GeneralName, type GeneralNameType, type Name } from './names.js';
import { OID } from './oids.js';

/**
 * Upper bound on name-versus-constraint comparisons for one path. Certificates with thousands of
 * names and constraints are a known denial-of-service shape (OpenSSL PR 4393, Go's
 * maxConstraintComparisons uses the same figure); such a path is refused, not evaluated.
 */
export const MAX_CONSTRAINT_COMPARISONS = 250_000;

export interface ComparisonBudget {
  remaining: number;
}

interface NamesByForm {
  dirName: Name[];
  dns: string[];
  email: string[];
  uri: string[];
  ip: Uint8Array[];
  /** Name forms present that certgate cannot compare (otherName, x400Address, ...). */
  opaque: Set<GeneralNameType>;
}

/** The names of a certificate that constraints apply to: subject DN, SANs, emailAddress attributes. */
export function constrainedNames(cert: ParsedCertificate): NamesByForm {
  const out: NamesByForm = { dirName: [], dns: [], email: [], uri: [], ip: [], opaque: new Set() };
  if (!isEmptyName(cert.subjectName)) out.dirName.push(cert.subjectName);
  // RFC 5280 4.2.1.10: legacy emailAddress attributes in the subject are rfc822Names too.
  for (const rdn of cert.subjectName.rdns) {
    for (const a of rdn) if (a.oid === OID.emailAddress && a.value !== null) out.email.push(a.value);
  }
  for (const n of cert.san.all) {
    switch (n.type) {
      case 'dirName':
        out.dirName.push(n.name);
        break;
      case 'dns':
        out.dns.push(n.value);
        break;
      case 'email':
        out.email.push(n.value);
        break;
      case 'uri':
        out.uri.push(n.value);
        break;
      case 'ip':
        out.ip.push(n.bytes);
        break;
      default:
        out.opaque.add(n.type);
    }
  }
  return out;
}

/** Null when `cert` satisfies `nc`, else a sentence saying which name breaks which constraint. */
export function checkNameConstraints(nc: NameConstraints, cert: ParsedCertificate, budget: ComparisonBudget): string | null {
  // Cost as OpenSSL counts it: every subject attribute and SAN against every constraint, of any
  // form, so a certificate with thousands of names is refused before any comparison.
  const nameCount = cert.subjectName.rdns.reduce((k, rdn) => k + rdn.length, 0) + cert.san.all.length;
  budget.remaining -= nameCount * (nc.permitted.length + nc.excluded.length);
  if (budget.remaining < 0) return 'too many names and name constraints to compare';
  const names = constrainedNames(cert);
  const permitted = groupByForm(nc.permitted);
  const excluded = groupByForm(nc.excluded);

  // RFC 5280 4.2.1.10: a constraint on a name form certgate cannot process must lead to rejection
  // when a name of that form is present.
  for (const form of names.opaque) {
    if (permitted.has(form) || excluded.has(form)) return `${form} names cannot be checked against ${form} constraints`;
  }

  return (
    checkForm(names.dirName, permitted.get('dirName'), excluded.get('dirName'), dirNameWithin, (n) => nameText(n), 'directoryName') ??
    checkForm(names.dns, permitted.get('dns'), excluded.get('dns'), dnsWithin, (s) => s, 'dNSName', dnsValid, dnsIntersects) ??
    checkForm(names.email, permitted.get('email'), excluded.get('email'), emailWithin, (s) => s, 'rfc822Name', emailValid) ??
    checkForm(names.uri, permitted.get('uri'), excluded.get('uri'), uriWithin, (s) => s, 'URI', (s) => uriHost(s) !== null) ??
    checkForm(names.ip, permitted.get('ip'), excluded.get('ip'), ipWithin, ipText, 'iPAddress', (b) => b.length === 4 || b.length === 16)
  );
}

function groupByForm(list: readonly GeneralName[]): Map<GeneralNameType, GeneralName[]> {
  const m = new Map<GeneralNameType, GeneralName[]>();
  for (const g of list) {
    const arr = m.get(g.type);
    if (arr) arr.push(g);
    else m.set(g.type, [g]);
  }
  return m;
}

function checkForm<N>(
  names: readonly N[],
  permitted: readonly GeneralName[] | undefined,
  excluded: readonly GeneralName[] | undefined,
  within: (name: N, base: GeneralName) => boolean,
  show: (name: N) => string,
  form: string,
  valid: (name: N) => boolean = () => true,
  intersects: (name: N, base: GeneralName) => boolean = within,
): string | null {
  if (names.length === 0 || (!permitted && !excluded)) return null;
  for (const name of names) {
    // A malformed name cannot be shown to lie inside (or outside) any subtree.
    if (!valid(name)) return `${form} "${show(name)}" is malformed and cannot be checked against name constraints`;
    const hit = excluded?.find((base) => intersects(name, base));
    if (hit) return `${form} "${show(name)}" is within excluded subtree "${baseText(hit)}"`;
    if (permitted && !permitted.some((base) => within(name, base))) {
      return `${form} "${show(name)}" is not within any permitted subtree (${permitted.map(baseText).join(', ')})`;
    }
  }
  return null;
}

function baseText(g: GeneralName): string {
  switch (g.type) {
    case 'dns':
    case 'email':
    case 'uri':
      return g.value;
    case 'ip':
      return g.value;
    case 'dirName':
      return nameText(g.name);
    default:
      return g.type;
  }
}

function nameText(n: Name): string {
  return n.text === '' ? '(empty)' : n.text;
}

// --- directoryName: the constraint's RDNs are a prefix of the name's RDNs ---------------------

function dirNameWithin(name: Name, base: GeneralName): boolean {
  if (base.type !== 'dirName') return false;
  const c = base.name.rdns;
  if (c.length > name.rdns.length) return false;
  for (let i = 0; i < c.length; i++) if (rdnKey(c[i]) !== rdnKey(name.rdns[i])) return false;
  return true;
}

// --- dNSName: zero or more labels added on the left ------------------------------------------

function hostWithin(host: string, domain: string): boolean {
  if (domain === '') return true;
  return host === domain || host.endsWith('.' + domain);
}

/** A SAN dNSName: a host name, optionally with one leading `*.` wildcard label. */
function dnsValid(name: string): boolean {
  const host = name.startsWith('*.') ? name.slice(2) : name;
  return isValidHostName(host);
}

function dnsWithin(name: string, base: GeneralName): boolean {
  if (base.type !== 'dns') return false;
  const n = name.toLowerCase();
  const c = base.value.toLowerCase();
  // A wildcard `*.X` stands for names one label below X: all inside the subtree iff X is.
  return n.startsWith('*.') ? hostWithin(n.slice(2), c) : hostWithin(n, c);
}

/**
 * For exclusions a wildcard must be judged by every name it may match (CVE-2025-61727): `*.X`
 * meets an excluded subtree C when X lies inside C or C lies strictly below X.
 */
function dnsIntersects(name: string, base: GeneralName): boolean {
  if (base.type !== 'dns') return false;
  const n = name.toLowerCase();
  const c = base.value.toLowerCase();
  if (!n.startsWith('*.')) return hostWithin(n, c);
  const x = n.slice(2);
  return hostWithin(x, c) || (c !== x && hostWithin(c, x));
}

// --- rfc822Name -----------------------------------------------------------------------------

function emailParts(addr: string): { local: string; domain: string } | null {
  const at = addr.lastIndexOf('@');
  if (at <= 0 || addr.indexOf('@') !== at) return null;
  const domain = addr.slice(at + 1);
  return isValidHostName(domain) ? { local: addr.slice(0, at), domain: domain.toLowerCase() } : null;
}

function emailValid(addr: string): boolean {
  return emailParts(addr) !== null;
}

/**
 * RFC 5280 4.2.1.10: `user@host` names one mailbox (local part compared exactly, `*` is a literal),
 * `host` every mailbox at that host, `.domain` every mailbox at any host below the domain.
 */
function emailWithin(addr: string, base: GeneralName): boolean {
  if (base.type !== 'email') return false;
  const p = emailParts(addr);
  if (!p) return false;
  const c = base.value;
  if (c.includes('@')) {
    const q = emailParts(c);
    return q !== null && q.local === p.local && q.domain === p.domain;
  }
  const lc = c.toLowerCase();
  if (lc.startsWith('.')) return p.domain.endsWith(lc);
  return p.domain === lc;
}

// --- uniformResourceIdentifier: the host of the authority --------------------------------------

/** The host of an absolute URI with an authority (`scheme://[userinfo@]host[:port]/...`), lowercased. */
export function uriHost(uri: string): string | null {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/.exec(uri);
  if (!m) return null;
  let authority = m[1];
  const at = authority.lastIndexOf('@');
  if (at >= 0) authority = authority.slice(at + 1);
  if (authority.startsWith('[')) return null; // IP literals cannot meet a host constraint
  const host = authority.replace(/:\d*$/, '').toLowerCase();
  return isValidHostName(host) ? host : null;
}

function uriWithin(uri: string, base: GeneralName): boolean {
  if (base.type !== 'uri') return false;
  const host = uriHost(uri);
  if (host === null) return false;
  const c = base.value.toLowerCase();
  if (c.startsWith('.')) return host.endsWith(c);
  return host === c;
}

// --- iPAddress: address and mask -------------------------------------------------------------

function ipWithin(addr: Uint8Array, base: GeneralName): boolean {
  if (base.type !== 'ip' || base.bytes.length !== addr.length * 2) return false;
  const n = addr.length;
  for (let i = 0; i < n; i++) {
    const mask = base.bytes[n + i];
    if ((addr[i] & mask) !== (base.bytes[i] & mask)) return false;
  }
  return true;
}

function ipText(b: Uint8Array): string {
  return formatIp(b);
}
