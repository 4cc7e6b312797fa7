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
  // Level by level in place: this runs for every publication (ACL, shared groups), so it
  // allocates nothing.
  const first = filter.charCodeAt(0);
  if (topic.charCodeAt(0) === DOLLAR && (first === PLUS || first === HASH)) return false;
  let f = 0; // where the filter's level starts
  let t = 0; // where the topic's level starts; -1 once the topic has no level left
  for (;;) {
    const fSlash = filter.indexOf('/', f);
    const fEnd = fSlash < 0 ? filter.length : fSlash;
    const length = fEnd - f;
    const wildcard = length === 1 ? filter.charCodeAt(f) : 0;
    if (wildcard === HASH) return true; // also matches the parent level: `a/#` matches `a` (MQTT 4.7.1.2)
    if (t < 0) return false;
    const tSlash = topic.indexOf('/', t);
    const tEnd = tSlash < 0 ? topic.length : tSlash;
    if (wildcard !== PLUS) {
      if (tEnd - t !== length) return false;
      for (let i = 0; i < length; i++) if (filter.charCodeAt(f + i) !== topic.charCodeAt(t + i)) return false;
    }
    if (fSlash < 0) return tSlash < 0; // as many levels in both
    f = fSlash + 1;
    t = tSlash < 0 ? -1 : tSlash + 1;
  }
}

const DOLLAR = 0x24;
const PLUS = 0x2b;
const HASH = 0x23;

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

/*
 * An ACL is read in order and the first rule for the action (or `all`) that matches decides, as
 * EMQX reads one (emqx_authz_rule:matches); none matching refuses. The verifier puts a profile's
 * deny rules before its allow rules, so a deny always wins.
 */

/** May the holder of `acl` publish to `topic`? The first publish rule matching the topic decides. */
export function mayPublish(acl: readonly AclRule[], topic: string): boolean {
  for (const r of acl) {
    if (r.action !== 'publish' && r.action !== 'all') continue;
    if (topicMatches(r.topic, topic)) return r.permission === 'allow';
  }
  return false;
}

/**
 * May the holder of `acl` subscribe to `filter`? The first subscribe rule covering the whole
 * filter decides: a deny of `a/b` refuses `a/b`, while `#`, which it does not cover, is decided
 * by the rules after it (and, granted, is not sent messages on `a/b`: see readDenied).
 */
export function maySubscribe(acl: readonly AclRule[], filter: string): boolean {
  for (const r of acl) {
    if (r.action !== 'subscribe' && r.action !== 'all') continue;
    if (filterCovers(r.topic, filter)) return r.permission === 'allow';
  }
  return false;
}

/**
 * The subscribe deny filters of `acl`, or undefined when it has none: a wider subscription they
 * do not cover is granted, and each message is checked against them on delivery, as mosquitto
 * checks read access on every message it delivers (src/subs.c, subs__send). The final deny of
 * everything (`all`) is not one of them: it only refuses what no allow rule grants.
 */
export function readDenied(acl: readonly AclRule[]): readonly string[] | undefined {
  let denied: string[] | undefined;
  for (const r of acl) {
    if (r.permission === 'deny' && r.action === 'subscribe') (denied ??= []).push(r.topic);
  }
  return denied;
}

/** Is `topic` matched by one of the `denied` filters (readDenied)? */
export function deniesTopic(denied: readonly string[], topic: string): boolean {
  for (const f of denied) if (topicMatches(f, topic)) return true;
  return false;
}
