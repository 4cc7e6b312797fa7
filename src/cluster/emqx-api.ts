/**
 * EMQX 5.8's REST API as `certgate emqx sync` uses it (emqx/emqx v5.8.9,
 * apps/emqx_management/src/emqx_mgmt_api_clients.erl and emqx_mgmt_api_listeners.erl), with an
 * API key as HTTP Basic (`api_key.bootstrap_file` lines `key:secret:role`):
 *
 * - `PUT /api/v5/listeners/{id}` `{id, type, ssl_options: {cacertfile: <PEM>}}`: the body is merged
 *   into the listener's config; EMQX writes PEM content to a file of its own and applies it on
 *   every node of the cluster.
 * - `GET /api/v5/clients?fields=clientid,client_attrs&limit=&page=`: `{data: [...], meta: {hasnext}}`.
 * - `DELETE /api/v5/clients/{clientid}`: 204, or 404 when the client is already gone.
 */
import type { BrokerAdapter, LiveClient } from './broker-sync.js';

export interface EmqxApiOptions {
  /** e.g. `http://emqx1:18083` (the dashboard listener serves the API). */
  url: string;
  apiKey: string;
  apiSecret: string;
  /** `<type>:<name>`, default `ssl:default`. */
  listenerId?: string;
  pageSize?: number;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export class BrokerApiError extends Error {}

export function createEmqxApi(opts: EmqxApiOptions): BrokerAdapter {
  const base = opts.url.replace(/\/+$/, '');
  const listenerId = opts.listenerId ?? 'ssl:default';
  const pageSize = opts.pageSize ?? 1000;
  const doFetch = opts.fetch ?? fetch;
  const auth = `Basic ${Buffer.from(`${opts.apiKey}:${opts.apiSecret}`).toString('base64')}`;

  async function call(method: string, path: string, body?: unknown): Promise<Response> {
    const res = await doFetch(`${base}${path}`, {
      method,
      headers: { authorization: auth, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
    });
    return res;
  }

  async function fail(res: Response, what: string): Promise<never> {
    const text = await res.text().catch(() => '');
    throw new BrokerApiError(`EMQX ${what}: HTTP ${res.status} ${text.slice(0, 300)}`);
  }

  return {
    async pushCaBundle(pem) {
      const type = listenerId.split(':')[0];
      const res = await call('PUT', `/api/v5/listeners/${encodeURIComponent(listenerId)}`, {
        id: listenerId,
        type,
        ssl_options: { cacertfile: pem },
      });
      if (res.status !== 200) await fail(res, `listener ${listenerId} update`);
      await res.arrayBuffer();
    },

    async listClients() {
      const out: LiveClient[] = [];
      for (let page = 1; ; page++) {
        const res = await call('GET', `/api/v5/clients?fields=clientid,client_attrs&limit=${pageSize}&page=${page}`);
        if (res.status !== 200) await fail(res, 'client listing');
        const body = (await res.json()) as { data?: Array<{ clientid?: unknown; client_attrs?: Record<string, unknown> }>; meta?: { hasnext?: boolean } };
        for (const c of body.data ?? []) {
          if (typeof c.clientid !== 'string') continue;
          const attrs = c.client_attrs ?? {};
          out.push({
            clientId: c.clientid,
            ...(typeof attrs.tenant_id === 'string' ? { tenantId: attrs.tenant_id } : {}),
            ...(typeof attrs.device_id === 'string' ? { deviceId: attrs.device_id } : {}),
          });
        }
        if (!body.meta?.hasnext || (body.data ?? []).length === 0) return out;
      }
    },

    async kick(client) {
      const res = await call('DELETE', `/api/v5/clients/${encodeURIComponent(client.clientId)}`);
      if (res.status !== 204 && res.status !== 404) await fail(res, `kick of ${client.clientId}`);
      await res.arrayBuffer();
    },
  };
}
