/**
 * Retained messages in PostgreSQL, so they survive a restart. The broker keeps them in memory
 * (bounded per tenant) and records every change here; changes are written shortly after, the last
 * one per topic winning, in the background. The rows go with their tenant (foreign key cascade),
 * and writes still pending for a deleted tenant are forgotten, so a tenant made again with the
 * same id never gets them back.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { PrismaClient } from '../db/prisma.js';
import type { ForwardedProperties, Message, QoS } from './broker.js';

export interface RetainedStore {
  /** Every stored retained message that has not expired. */
  load(): Promise<Array<{ tenantId: string; message: Message }>>;
  /** A retained message set (or, with `message` undefined, deleted). */
  record(tenantId: string, topic: string, message: Message | undefined): void;
  /** A tenant was deleted: writes not yet made for it are dropped. */
  forgetTenant(tenantId: string): void;
  /** Writes what is pending (tried once more), then stops. */
  close(): Promise<void>;
}

/** Changes wait this long, so a topic retained many times a second costs one write. */
const WRITE_DELAY_MS = 50;
/** After a failed write (the database unreachable), the next try waits this long. */
const RETRY_MS = 2_000;

const topicHash = (topic: string) => createHash('sha256').update(topic).digest('hex');

/** JSON for the properties: the correlation data (binary) as base64. */
function propertiesToJson(p: ForwardedProperties | undefined): object | undefined {
  if (!p) return undefined;
  return { ...p, ...(p.correlationData ? { correlationData: p.correlationData.toString('base64') } : {}) };
}

function propertiesFromJson(j: unknown): ForwardedProperties | undefined {
  if (!j || typeof j !== 'object') return undefined;
  const p = j as ForwardedProperties & { correlationData?: unknown };
  return {
    ...p,
    ...(typeof p.correlationData === 'string' ? { correlationData: Buffer.from(p.correlationData, 'base64') } : {}),
  } as ForwardedProperties;
}

/** Prisma's error for a row whose tenant no longer exists. */
const isTenantGone = (err: unknown) => (err as { code?: string }).code === 'P2003';

export function createRetainedStore(prisma: PrismaClient, log: Logger): RetainedStore {
  const pending = new Map<string, { tenantId: string; topic: string; message: Message | undefined }>();
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> | undefined;
  let failing = false;
  let closed = false;

  const schedule = (delay: number) => {
    if (timer || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      void flush();
    }, delay);
    timer.unref();
  };

  const writeOne = async (tenantId: string, topic: string, message: Message | undefined): Promise<void> => {
    const key = { tenantId, topicHash: topicHash(topic) };
    if (!message) {
      await prisma.mqttRetained.deleteMany({ where: key });
      return;
    }
    const properties = propertiesToJson(message.properties);
    const data = {
      topic,
      payload: new Uint8Array(message.payload),
      qos: message.qos,
      properties: properties ?? undefined,
      expiresAt: message.expiresAt !== undefined ? new Date(message.expiresAt) : null,
      updatedAt: new Date(),
    };
    try {
      await prisma.mqttRetained.upsert({ where: { tenantId_topicHash: key }, create: { ...key, ...data }, update: data });
    } catch (err) {
      if (!isTenantGone(err)) throw err; // the tenant was deleted meanwhile: nothing to keep
    }
  };

  const flush = (): Promise<void> => {
    writing ??= (async () => {
      try {
        while (pending.size) {
          const [k, op] = pending.entries().next().value!;
          pending.delete(k);
          try {
            await writeOne(op.tenantId, op.topic, op.message);
          } catch (err) {
            // Kept for the next try unless a newer change of the same topic came meanwhile.
            if (!pending.has(k)) pending.set(k, op);
            if (!failing) log.warn({ err: (err as Error).message }, 'retained messages not stored yet; trying again');
            failing = true;
            schedule(RETRY_MS);
            return;
          }
        }
        failing = false;
      } finally {
        writing = undefined;
      }
    })();
    return writing;
  };

  return {
    async load() {
      const rows = await prisma.mqttRetained.findMany();
      const now = Date.now();
      return rows
        .filter((r) => !r.expiresAt || r.expiresAt.getTime() > now)
        .map((r) => {
          const properties = propertiesFromJson(r.properties);
          const message: Message = { topic: r.topic, payload: Buffer.from(r.payload), qos: r.qos as QoS, retain: true };
          if (properties) message.properties = properties;
          if (r.expiresAt) message.expiresAt = r.expiresAt.getTime();
          return { tenantId: r.tenantId, message };
        });
    },
    record(tenantId, topic, message) {
      const k = `${tenantId}\u0000${topic}`;
      pending.delete(k); // re-inserted last: changes are written in the order they were made
      pending.set(k, { tenantId, topic, message });
      schedule(WRITE_DELAY_MS);
    },
    forgetTenant(tenantId) {
      for (const [k, op] of pending) if (op.tenantId === tenantId) pending.delete(k);
    },
    async close() {
      clearTimeout(timer);
      timer = undefined;
      await writing;
      await flush();
      closed = true;
    },
  };
}
