/**
 * EMQX 5.8's side of its HTTP authenticator, HTTP authorizer and REST API, reproduced from its
 * source (github.com/emqx/emqx, tag v5.8.9) so tests speak to certgate exactly as EMQX would.
 * No EMQX code is copied; each function names the file whose behaviour it follows.
 */

/** What EMQX knows of a client when it renders a request template. */
export interface EmqxClientVars {
  clientid: string;
  username?: string;
  /** The peer's address; rendered with inet:ntoa. */
  peerhost?: string;
  /** The client certificate's DER (`peercert`), when the listener got one. */
  certDer?: Uint8Array;
  client_attrs?: Record<string, string>;
  /** Authorizer requests only. */
  topic?: string;
  action?: 'publish' | 'subscribe';
}

/**
 * Renders a request body template as apps/emqx_auth/src/emqx_auth_utils.erl does
 * (render_deep_for_json, render_var): `${cert_pem}` becomes base64 of the DER on one line
 * (`base64:encode(Value)`, no PEM armour, no line breaks), `${peerhost}` `inet:ntoa`, and a
 * placeholder with no value (no username, no certificate, a missing client attribute) becomes "".
 * The allowed placeholders are ?AUTHN_DEFAULT_ALLOWED_VARS of apps/emqx_auth/include/emqx_authn.hrl
 * (and ?ALLOWED_VARS of apps/emqx_auth_http/src/emqx_authz_http.erl for the authorizer).
 */
export function renderTemplate(template: Record<string, string>, vars: EmqxClientVars): Record<string, string> {
  const value = (name: string): string => {
    if (name.startsWith('client_attrs.')) return vars.client_attrs?.[name.slice('client_attrs.'.length)] ?? '';
    switch (name) {
      case 'clientid':
        return vars.clientid;
      case 'username':
        return vars.username ?? '';
      case 'peerhost':
        return vars.peerhost ?? '';
      case 'cert_pem':
        return vars.certDer ? Buffer.from(vars.certDer).toString('base64') : '';
      case 'topic':
        return vars.topic ?? '';
      case 'action':
        return vars.action ?? '';
      default:
        throw new Error(`placeholder \${${name}} is not one EMQX renders here`);
    }
  };
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(template)) out[k] = v.replace(/\$\{([^}]+)\}/g, (_, name: string) => value(name));
  return out;
}

export interface EmqxAclRule {
  permission: 'allow' | 'deny';
  action: 'publish' | 'subscribe' | 'all';
  topics: string[];
}

export type EmqxAuthnOutcome =
  | { outcome: 'ok'; is_superuser: boolean; client_attrs: Record<string, string>; expireAtMs?: number; acl?: EmqxAclRule[] }
  | { outcome: 'error'; reason: 'not_authorized' | 'bad_username_or_password' }
  | { outcome: 'ignore' }
  /** An exception in the authenticator: EMQX counts the authentication as failed by its backend. */
  | { outcome: 'crash'; why: string };

/** emqx_utils:is_restricted_str (apps/emqx_utils/src/emqx_utils.erl). */
export const RESTRICTED_STR = /^[A-Za-z0-9]+[A-Za-z0-9-_]*$/;

/**
 * The HTTP authenticator's reading of a response, apps/emqx_auth_http/src/emqx_authn_http.erl:
 * authenticate/2 (204 = allow, 200 = read the body, any other status = ignore), handle_response
 * (content type must be application/json or form; an unparsable body = ignore), body_to_auth_data
 * (`result` allow/deny/ignore), extract_auth_data: is_superuser, client_attrs
 * (apps/emqx_auth/src/emqx_authn/emqx_authn_utils.erl: keys not matching is_restricted_str are
 * dropped, values go through iolist_to_binary, which raises on null, numbers and booleans),
 * expire_sec (an integer of Unix seconds, not in the past, not in milliseconds) and acl
 * (emqx_authz_rule_raw:parse_and_compile_rules).
 */
export function readAuthnResponse(status: number, contentType: string | undefined, body: string, nowMs = Date.now()): EmqxAuthnOutcome {
  if (status === 204) return { outcome: 'ok', is_superuser: false, client_attrs: {} };
  if (status !== 200) return { outcome: 'ignore' };
  if (!(contentType ?? '').startsWith('application/json')) return { outcome: 'ignore' };
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(body);
  } catch {
    return { outcome: 'ignore' };
  }
  const result = parsed.result ?? 'ignore';
  if (result === 'deny') return { outcome: 'error', reason: 'not_authorized' };
  if (result !== 'allow') return { outcome: 'ignore' };

  const is_superuser = toBool(parsed.is_superuser);
  const client_attrs: Record<string, string> = {};
  if ('client_attrs' in parsed) {
    const attrs = parsed.client_attrs;
    if (attrs === null || typeof attrs !== 'object' || Array.isArray(attrs)) return { outcome: 'crash', why: 'client_attrs is not a map' };
    for (const [k, v] of Object.entries(attrs)) {
      if (!RESTRICTED_STR.test(k)) continue;
      if (typeof v !== 'string') return { outcome: 'crash', why: `iolist_to_binary(${JSON.stringify(v)}) of client_attrs.${k}` };
      client_attrs[k] = v;
    }
  }
  let expireAtMs: number | undefined;
  if ('expire_at' in parsed) {
    const e = parsed.expire_at;
    if (typeof e !== 'number' || !Number.isInteger(e)) return { outcome: 'error', reason: 'bad_username_or_password' };
    const nowSec = Math.floor(nowMs / 1000);
    if (e < nowSec) return { outcome: 'error', reason: 'bad_username_or_password' };
    if (e > Math.floor((nowSec * 1000) / 2)) return { outcome: 'error', reason: 'bad_username_or_password' };
    expireAtMs = e * 1000;
  }
  let acl: EmqxAclRule[] | undefined;
  if ('acl' in parsed) {
    if (!Array.isArray(parsed.acl)) return { outcome: 'crash', why: 'acl is not a list' };
    acl = [];
    for (const raw of parsed.acl) {
      const rule = parseRawRule(raw);
      if (!rule) return { outcome: 'error', reason: 'bad_username_or_password' };
      acl.push(rule);
    }
  }
  return { outcome: 'ok', is_superuser, client_attrs, ...(expireAtMs === undefined ? {} : { expireAtMs }), ...(acl ? { acl } : {}) };
}

/** emqx_authn_utils:to_bool. */
function toBool(v: unknown): boolean {
  return v === true || v === 'true';
}

/**
 * apps/emqx_auth/src/emqx_authz/emqx_authz_rule_raw.erl parse_rule: `permission` and `action`
 * required; `topic` (one) or `topics` (a list); permission allow|deny; action pub|publish|sub|
 * subscribe|all; qos 0..2 (or a list, or "0,1"); retain true|false|0|1|"all".
 */
export function parseRawRule(raw: unknown): EmqxAclRule | undefined {
  if (raw === null || typeof raw !== 'object') return undefined;
  const r = raw as Record<string, unknown>;
  if (!('permission' in r) || !('action' in r)) return undefined;
  let topics: string[];
  if (typeof r.topic === 'string') topics = [r.topic];
  else if (Array.isArray(r.topics) && r.topics.every((t) => typeof t === 'string')) topics = r.topics as string[];
  else return undefined;
  if (r.permission !== 'allow' && r.permission !== 'deny') return undefined;
  const action =
    r.action === 'pub' || r.action === 'publish' ? 'publish' : r.action === 'sub' || r.action === 'subscribe' ? 'subscribe' : r.action === 'all' ? 'all' : undefined;
  if (!action) return undefined;
  if ('qos' in r && r.qos !== null && ![0, 1, 2].includes(r.qos as number) && !Array.isArray(r.qos) && typeof r.qos !== 'string') return undefined;
  if ('retain' in r && r.retain !== null && ![true, false, 0, 1, 'true', 'false', '0', '1', 'all'].includes(r.retain as never)) return undefined;
  return { permission: r.permission, action, topics };
}

/** emqx_topic:words: `+` and `#` are wildcards, other levels literal. */
function words(topic: string): string[] {
  return topic.split('/');
}

/**
 * emqx_topic:match (apps/emqx/src/emqx_topic.erl) on words: a name starting with `$` never
 * matches a filter starting with a wildcard; `+` takes one level, `#` the rest. A subscription's
 * filter is matched as a name, its wildcards as literal words.
 */
export function emqxTopicMatch(name: string, filter: string): boolean {
  const n = words(name);
  const f = words(filter);
  if (n[0]?.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  const tokens = (i: number, j: number): boolean => {
    if (j < f.length && f[j] === '#' && j === f.length - 1) return true;
    if (i === n.length && j === f.length) return true;
    if (i === n.length || j === f.length) return false;
    if (n[i] === f[j] || f[j] === '+') return tokens(i + 1, j + 1);
    return false;
  };
  return tokens(0, 0);
}

/**
 * emqx_authz_client_info:authorize (apps/emqx_auth/src/emqx_authz/sources/emqx_authz_client_info.erl)
 * with emqx_authz_rule:matches: the ACL from the authentication is checked first, the first rule
 * whose action and topic match decides; `nomatch` passes the request on to the next authorization
 * source and finally to `authorization.no_match` (allow by default).
 */
export function emqxAclCheck(acl: EmqxAclRule[], action: 'publish' | 'subscribe', topic: string): 'allow' | 'deny' | 'nomatch' {
  for (const rule of acl) {
    if (rule.action !== 'all' && rule.action !== action) continue;
    if (rule.topics.some((f) => (f.startsWith('eq ') ? f.slice(3) === topic : emqxTopicMatch(topic, f)))) return rule.permission;
  }
  return 'nomatch';
}

/**
 * The HTTP authorizer's reading of a response, apps/emqx_auth_http/src/emqx_authz_http.erl
 * authorize/4 with emqx_authz_utils:parse_http_resp_body: 204 = allow; 200 with `result`
 * allow/deny/ignore; anything else is `nomatch` (then `authorization.no_match` decides).
 */
export function readAuthzResponse(status: number, contentType: string | undefined, body: string): 'allow' | 'deny' | 'ignore' | 'nomatch' {
  if (status === 204) return 'allow';
  if (status !== 200) return 'nomatch';
  if (!(contentType ?? 'application/json').startsWith('application/json')) return 'nomatch';
  try {
    const r = JSON.parse(body).result;
    return r === 'allow' || r === 'deny' || r === 'ignore' ? r : 'nomatch';
  } catch {
    return 'nomatch';
  }
}
