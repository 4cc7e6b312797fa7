/**
 * Persistent MQTT sessions across a restart: a listener shutting down writes the sessions it
 * keeps (subscriptions, queued and in-flight messages, their expiry); the next start takes them
 * back and deletes the rows, so a session lives in one place at a time. A session that expired
 * meanwhile is not taken back. The rows go with their tenant (foreign key cascade).
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { PrismaClient } from '../db/prisma.js';
import type { SessionState } from './broker.js';

export interface StoredSession {
  tenantId: string;
  state: SessionState;
  /** Epoch ms the session expires at when nobody resumes it. */
  expiresAt: number;
}

export interface SessionStore {
  /** Every stored session that has not expired; the rows are deleted. */
  take(): Promise<StoredSession[]>;
  save(sessions: StoredSession[]): Promise<void>;
}

const clientIdHash = (clientId: string) => createHash('sha256').update(clientId).digest('hex');

/** Buffers (payloads, correlation data) as JSON and back. */
const toJson = (state: SessionState): object => JSON.parse(JSON.stringify(state));
const fromJson = (j: unknown): SessionState =>
  JSON.parse(JSON.stringify(j), (_k, v) =>
    v && typeof v === 'object' && v.type === 'Buffer' && Array.isArray(v.data) ? Buffer.from(v.data) : v,
  ) as SessionState;

export function createSessionStore(prisma: PrismaClient, log: Logger): SessionStore {
  return {
    async take() {
      const rows = await prisma.$transaction(async (tx) => {
        const all = await tx.mqttSession.findMany();
        await tx.mqttSession.deleteMany({});
        return all;
      });
      const now = Date.now();
      return rows
        .filter((r) => r.expiresAt.getTime() > now)
        .map((r) => ({ tenantId: r.tenantId, state: fromJson(r.state), expiresAt: r.expiresAt.getTime() }));
    },
    async save(sessions) {
      let saved = 0;
      for (const s of sessions) {
        const key = { tenantId: s.tenantId, clientIdHash: clientIdHash(s.state.clientId) };
        const data = { expiresAt: new Date(s.expiresAt), state: toJson(s.state) };
        try {
          await prisma.mqttSession.upsert({ where: { tenantId_clientIdHash: key }, create: { ...key, ...data }, update: data });
          saved++;
        } catch (err) {
          // A tenant deleted meanwhile has no sessions to keep; anything else is reported once.
          if ((err as { code?: string }).code === 'P2003') continue;
          log.warn({ err: (err as Error).message, sessions: sessions.length - saved }, 'persistent MQTT sessions not saved');
          return;
        }
      }
      if (saved) log.info({ sessions: saved }, 'persistent MQTT sessions saved for the next start');
    },
  };
}
