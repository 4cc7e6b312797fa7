/**
 * VerneMQ's HTTP API as `certgate vernemq sync` uses it (vernemq/vernemq,
 * apps/vmq_server/src/vmq_http_mgmt_api.erl: `GET /api/v1/<vmq-admin command>`, query `key=value`
 * for keys and `--flag[=value]` for flags, the API key as the user of HTTP Basic; output written
 * by apps/vmq_server/src/vmq_cli_json_writer.erl as `{"type": "table", "table": [rows]}`):
 *
 * - `session/show?--limit=N&--client_id&--mountpoint&--user` lists sessions (apps/vmq_server/src/
 *   vmq_info_cli.erl, `vmq-admin session show`, 100 rows unless `--limit`);
 * - `session/disconnect?client-id=X&--mountpoint=M` closes one (`vmq-admin session disconnect`).
 *
 * Sessions authenticated by certgate have the tenant id as mountpoint and the device id as user
 * (see vernemq-hooks.ts). VerneMQ reads its listener's CA file at start, so the bundle is written
 * to a file (atomically) for the nodes to read at their next listener restart.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { BrokerAdapter, LiveClient } from './broker-sync.js';
import { BrokerApiError } from './emqx-api.js';

export interface VernemqApiOptions {
  /** e.g. `http://vernemq1:8888`. */
  url: string;
  apiKey: string;
  /** Where the CA bundle is written; none: the bundle is not written. */
  caFile?: string;
  sessionLimit?: number;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

type Row = Record<string, unknown>;

function tableRows(body: unknown): Row[] {
  const parts = Array.isArray(body) ? body : [body];
  return parts.flatMap((p) => (p && typeof p === 'object' && Array.isArray((p as { table?: unknown }).table) ? ((p as { table: Row[] }).table) : []));
}

export function createVernemqApi(opts: VernemqApiOptions): BrokerAdapter {
  const base = opts.url.replace(/\/+$/, '');
  const doFetch = opts.fetch ?? fetch;
  const auth = `Basic ${Buffer.from(`${opts.apiKey}:`).toString('base64')}`;

  async function get(command: string, query: string): Promise<unknown> {
    const res = await doFetch(`${base}/api/v1/${command}?${query}`, {
      headers: { authorization: auth, accept: 'application/json' },
      signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
    });
    const text = await res.text();
    if (res.status !== 200) throw new BrokerApiError(`VerneMQ ${command}: HTTP ${res.status} ${text.slice(0, 300)}`);
    return text ? JSON.parse(text) : undefined;
  }

  return {
    async pushCaBundle(pem) {
      if (!opts.caFile) return;
      const tmp = path.join(path.dirname(opts.caFile), `.${path.basename(opts.caFile)}.${process.pid}.tmp`);
      await fs.writeFile(tmp, pem, { mode: 0o644 });
      await fs.rename(tmp, opts.caFile);
    },

    async listClients() {
      const body = await get('session/show', `--limit=${opts.sessionLimit ?? 1_000_000}&--client_id&--mountpoint&--user`);
      const out: LiveClient[] = [];
      for (const r of tableRows(body)) {
        if (typeof r.client_id !== 'string') continue;
        out.push({
          clientId: r.client_id,
          ...(typeof r.mountpoint === 'string' && r.mountpoint ? { tenantId: r.mountpoint } : {}),
          ...(typeof r.user === 'string' ? { deviceId: r.user } : {}),
        });
      }
      return out;
    },

    async kick(client) {
      const q = new URLSearchParams({ 'client-id': client.clientId, '--mountpoint': client.tenantId ?? '' });
      await get('session/disconnect', q.toString());
    },
  };
}
