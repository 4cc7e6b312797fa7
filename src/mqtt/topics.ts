/**
 * MQTT topic names and filters (MQTT 3.1.1 section 4.7, MQTT 5 section 4.7): validation, matching,
 * and the per-tenant ACL checks.
 */
import type { AclRule } from '../verifier/verifier-types.js';

/**
 * Levels a topic or filter may have. MQTT sets no limit, but the topic trees walk levels
 * recursively, so a topic of a hundred thousand `/` must not reach them (aedes caps at 100).
 */
export const MAX_TOPIC_LEVELS = 128;

/** MQTT 4.7.3: at least one character; MQTT 1.5.3: no U+0000. Length is bounded by the packet size. */
function basicTopicOk(s: string): boolean {
  if (s.length === 0 || s.includes('\u0000')) return false;
  let levels = 1;
  for (let i = s.indexOf('/'); i !== -1; i = s.indexOf('/', i + 1)) {
    if (++levels > MAX_TOPIC_LEVELS) return false;
  }
  return true;
}

/** A topic name in PUBLISH or a will: no wildcards (MQTT 4.7.1). */
export function isValidTopicName(topic: string): boolean {
  return basicTopicOk(topic) && !topic.includes('+') && !topic.includes('#');
}

/**
 * A topic filter in SUBSCRIBE/UNSUBSCRIBE (MQTT 4.7.1.2, 4.7.1.3): `#` only as the whole last
 * level, `+` only as a whole level.
 */
export function isValidTopicFilter(filter: string): boolean {
  if (!basicTopicOk(filter)) return false;
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!;
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return false;
    if (l.includes('+') && l !== '+') return false;
  }
  return true;
}

/** `$share/{group}/{filter}` (MQTT 5 4.8.2). certgate does not offer shared subscriptions. */
export function isSharedSubscription(filter: string): boolean {
  return filter.startsWith('$share/');
}

/**
 * Does `filter` match the topic name `topic`? Wildcards at the first level never match a topic
 * starting with `$` (MQTT 4.7.2).
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const fl = f[i]!;
    if (fl === '#') return true; // also matches the parent level: `a/#` matches `a` (MQTT 4.7.1.2)
    if (i >= t.length) return false;
    if (fl !== '+' && fl !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * Is every topic that `inner` can match also matched by `outer`? Used for subscribe ACLs: a device
 * allowed `devices/dev1/#` may subscribe to `devices/dev1/+/state` but not to `devices/#`
 * (mosquitto's rule for ACL patterns against subscriptions).
 */
export function filterCovers(outer: string, inner: string): boolean {
  const dollar = inner.startsWith('$');
  const o = outer.split('/');
  const n = inner.split('/');
  for (let i = 0; i < o.length; i++) {
    const ol = o[i]!;
    // A wildcard first level never reaches `$` topics (MQTT 4.7.2), so it cannot cover them.
    if (ol === '#') return !(i === 0 && dollar); // `a/#` covers `a/...` and `a` itself
    if (i >= n.length) return false;
    const nl = n[i]!;
    if (nl === '#') return false; // inner reaches deeper than a non-`#` level can
    if (ol === '+') {
      if (i === 0 && dollar) return false;
      continue; // `+` covers any single level, `+` included
    }
    if (nl !== ol) return false; // a literal level covers only itself, not `+`
  }
  return o.length === n.length;
}

/** May the holder of `acl` publish to `topic`? */
export function mayPublish(acl: readonly AclRule[], topic: string): boolean {
  for (const r of acl) {
    if (r.action === 'publish' && r.permission === 'allow' && topicMatches(r.topic, topic)) return true;
  }
  return false;
}

/** May the holder of `acl` subscribe to `filter`? Only if one subscribe rule covers the whole filter. */
export function maySubscribe(acl: readonly AclRule[], filter: string): boolean {
  for (const r of acl) {
    if (r.action === 'subscribe' && r.permission === 'allow' && filterCovers(r.topic, filter)) return true;
  }
  return false;
}
