/**
 * VerneMQ's webhooks answered from the verifier and the devices' ACLs. VerneMQ POSTs JSON with a
 * `vernemq-hook` header naming the hook and reads the reply as its vmq_webhooks plugin defines
 * (apps/vmq_webhooks/src/vmq_webhooks_plugin.erl, handle_response and normalize_modifiers; the
 * modifiers it accepts are in apps/vmq_plugin/src/vmq_plugin_util.erl):
 *
 * - `auth_on_register(_m5)`: `{"result": "ok", "modifiers": {...}}` or `{"result": {"error": ...}}`.
 *   The leaf is `client_cert`, base64 DER, sent only with `listener.ssl.forward_connection_opts = on`.
 *   A `mountpoint` modifier is taken only together with `client_id` (both become the session's
 *   subscriber id), so both are sent: the mountpoint is the tenant id, which keeps tenants' topics and
 *   sessions apart (two tenants' `dev1` are different sessions). `username` is set to the device id,
 *   so the publish and subscribe hooks, which carry only username, mountpoint and client id, know the
 *   device without any state kept here. `max_connection_lifetime` ends the session when the leaf
 *   expires (apps/vmq_server/src/vmq_mqtt_fsm.erl, set_maxlifetime_timer).
 * - `auth_on_publish(_m5)`: `{"result": "ok"}` or an error.
 * - `auth_on_subscribe`: `{"result": "ok", "topics": [{topic, qos}]}`, `auth_on_subscribe_m5`:
 *   `{"result": "ok", "modifiers": {"topics": [...]}}`, where a refused topic has qos 128.
 *
 * No reply carries Cache-Control: VerneMQ would keep it for max-age and skip the next check.
 */
import { z } from 'zod';
import { BadRequestError } from '../errors.js';
import { presentedChain } from '../verifier/presented-chain.js';
import type { Verifier } from '../verifier/verifier-types.js';
import { aclAllows, type ClusterService } from './cluster-service.js';

export const VERNEMQ_HOOKS = [
  'auth_on_register',
  'auth_on_register_m5',
  'auth_on_publish',
  'auth_on_publish_m5',
  'auth_on_subscribe',
  'auth_on_subscribe_m5',
] as const;
export type VernemqHook = (typeof VERNEMQ_HOOKS)[number];

/**
 * Longest `max_connection_lifetime`, in seconds: vmq_mqtt_fsm:set_maxlifetime_timer passes it times
 * 1000 to erlang:send_after, whose limit is 2^32 - 1 ms.
 */
export const MAX_LIFETIME_SECONDS = Math.floor((2 ** 32 - 1) / 1000);

/** VerneMQ refuses a subscription whose qos is 128 (vmq_plugin_util:to_internal_qos). */
export const REFUSED_QOS = 128;

const NOT_ALLOWED = { result: { error: 'not_allowed' } } as const;

const registerBody = z.looseObject({
  client_id: z.string(),
  username: z.string().nullish(),
  mountpoint: z.string().nullish(),
  client_cert: z.string().nullish(),
});

const publishBody = z.looseObject({
  client_id: z.string(),
  username: z.string().nullish(),
  mountpoint: z.string().nullish(),
  topic: z.string(),
});

const subscribeBody = z.looseObject({
  client_id: z.string(),
  username: z.string().nullish(),
  mountpoint: z.string().nullish(),
  topics: z.array(z.looseObject({ topic: z.string(), qos: z.number().int() })).max(1000),
});

function parse<T extends z.ZodType>(schema: T, hook: string, body: unknown): z.output<T> {
  const r = schema.safeParse(body);
  if (!r.success) {
    const what = r.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ');
    throw new BadRequestError(`not a ${hook} webhook body: ${what}`, 'verifier/InvalidWebhook');
  }
  return r.data;
}

export interface VernemqDeps {
  verifier: Verifier;
  cluster: Pick<ClusterService, 'currentAcl'>;
}

export async function answerVernemqHook(hook: VernemqHook, body: unknown, deps: VernemqDeps): Promise<unknown> {
  switch (hook) {
    case 'auth_on_register':
    case 'auth_on_register_m5': {
      const b = parse(registerBody, hook, body);
      if (!b.client_cert) {
        // Fail closed: without the certificate nothing can be decided (the listener must forward it).
        return { result: { error: 'no client certificate: set listener.ssl.forward_connection_opts = on' } };
      }
      const decision = await deps.verifier.authenticate({
        clientId: b.client_id,
        certificateChain: presentedChain(b.client_cert),
        ...(b.username ? { username: b.username } : {}),
      });
      if (decision.result !== 'allow') return NOT_ALLOWED;
      // The session ends when the certificate does; VerneMQ arms an Erlang timer in milliseconds,
      // which takes at most 2^32 - 1, so a longer lifetime is cut to ~49 days (then a reconnect).
      const lifetime = Math.min(Math.max(1, decision.expire_at - Math.floor(Date.now() / 1000)), MAX_LIFETIME_SECONDS);
      return {
        result: 'ok',
        modifiers: {
          mountpoint: decision.tenantId,
          client_id: b.client_id,
          username: decision.device.id,
          max_connection_lifetime: lifetime,
        },
      };
    }
    case 'auth_on_publish':
    case 'auth_on_publish_m5': {
      const b = parse(publishBody, hook, body);
      const acl = await deps.cluster.currentAcl(b.mountpoint ?? '', b.username ?? '');
      return acl && aclAllows(acl, 'publish', b.topic) ? { result: 'ok' } : NOT_ALLOWED;
    }
    case 'auth_on_subscribe':
    case 'auth_on_subscribe_m5': {
      const b = parse(subscribeBody, hook, body);
      const acl = await deps.cluster.currentAcl(b.mountpoint ?? '', b.username ?? '');
      if (!acl) return NOT_ALLOWED;
      const granted = b.topics.map((t) => aclAllows(acl, 'subscribe', t.topic));
      if (granted.every(Boolean)) return { result: 'ok' };
      // Allowed topics keep what the client asked for (MQTT 5 options included); refused ones get 128.
      const topics = b.topics.map((t, i) => (granted[i] ? t : { topic: t.topic, qos: REFUSED_QOS }));
      return hook === 'auth_on_subscribe' ? { result: 'ok', topics } : { result: 'ok', modifiers: { topics } };
    }
  }
}
