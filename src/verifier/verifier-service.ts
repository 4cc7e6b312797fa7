import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { ParsedCertificate } from '../pki/certificate.js';
import { recordQueue, type RecordQueueOptions } from './records-queue.js';
import type { ChangePublisher } from '../db/change-feed.js';
import type { Metrics } from '../plugins/metrics.js';
import type { TrustState } from './trust-state.js';
import { GenerationalCache } from '../lib/generational-cache.js';
import { without } from '../lib/without.js';
import { createDecision, type DecideOptions, type Resolution } from './decision.js';
import { CACHE_TTL_SECONDS } from './decision-steps.js';
import type { TrustCache } from './trust-cache.js';
import {
  authEventEncoder,
  type AuthEventRow,
  type EncodedAuthEvent,
  type ObservedLeaf,
  type VerifierRepository,
} from './verifier-repository.js';
import {
  VerifierUnavailableError,
  type AuthenticateRequest,
  type Decision,
  type Verifier,
} from './verifier-types.js';

export type { DecideOptions, Resolution } from './decision.js';
export { expandAcl } from './decision-steps.js';

export interface VerifierDeps {
  repository: VerifierRepository;
  cache: TrustCache;
  publisher: ChangePublisher;
  /** Whether the caches may be trusted; every decision waits for it (see trust-state.ts). */
  state?: Pick<TrustState, 'current'>;
  metrics?: Metrics;
  logger?: Logger;
  clock?: () => Date;
  /** How many records may wait for the database, and how long `close` waits for them. */
  records?: RecordQueueOptions;
}

/**
 * What a cached decision keeps of its leaf: enough to record the next sighting and to expire
 * with the certificate (a few hundred bytes, where the whole parse is ~6 KB of heap).
 */
type LeafFacts = Pick<ParsedCertificate, 'sha256' | 'der' | 'subject' | 'issuer' | 'serialNumberHex' | 'notBefore' | 'notAfter'>;
type Recorded = Omit<Resolution, 'leaf'> & {
  leaf?: LeafFacts;
  /** A decision kept in the cache encodes its auth events with this, made when it was kept. */
  encodeEvent?: (time: Date) => EncodedAuthEvent;
};

function leafFacts(c: ParsedCertificate): LeafFacts {
  return {
    sha256: c.sha256,
    der: c.der,
    subject: c.subject,
    issuer: c.issuer,
    serialNumberHex: c.serialNumberHex,
    notBefore: c.notBefore,
    notAfter: c.notAfter,
  };
}

/**
 * The verifier: each request decided (decision.ts) unless a decision kept for the same request
 * still holds, and every decision recorded.
 */
export function createVerifier(deps: VerifierDeps) {
  const { repository, cache, publisher, metrics, logger } = deps;
  const clock = deps.clock ?? (() => new Date());
  // Decisions expire after CACHE_TTL_SECONDS; a cold request misses here, so the cache is cheap to miss.
  const decisions = new GenerationalCache<string, { generation: number; expires: number; resolution: Recorded }>(100_000);
  // Measurement switch (lib/without.ts), read once.
  const decisionCache = !without('decision-cache');
  // Bound once: a labelled child found again on every request costs a lookup each time.
  const cacheHits = metrics?.verifierCache.labels('hit');
  const cacheMisses = metrics?.verifierCache.labels('miss');

  // Auth events and sightings are kept until written, whatever the database does meanwhile
  // (records-queue.ts); the verifier's close waits for them, bounded.
  const authEvents = recordQueue<EncodedAuthEvent>('auth_event', (batch) => repository.insertAuthEvents(batch.items, batch.id), deps);
  // Observed leaves are written behind. A credential new to the database is counted and
  // announced in the transaction that writes it (verifier-repository.ts, recordObserved): it
  // changes how its leaf resolves, so no process may keep deciding without it.
  const observed = recordQueue<ObservedLeaf>(
    'sighting',
    async ({ items: leaves }) => {
      const latest = new Map(leaves.map((l) => [l.credentialsId, l]));
      await repository.recordObserved([...latest.values()]);
    },
    deps,
  );

  const decider = createDecision({ cache, repository, clock });

  async function decide(req: AuthenticateRequest, opts: DecideOptions = {}): Promise<Resolution> {
    try {
      return await decider.decide(req, opts);
    } catch (err) {
      // Callers only learn "unavailable" (and fail closed); the cause belongs in the log.
      logger?.warn({ err }, 'verifier cannot decide');
      throw new VerifierUnavailableError((err as Error)?.message ?? 'store unavailable');
    }
  }

  function cacheKey(req: AuthenticateRequest): string {
    // Length prefixes keep the fields apart whatever they contain; one-shot hash, no Hash object.
    let text = '';
    for (const c of req.certificateChain) text += `${c.length}:${c}`;
    for (const f of [req.clientId, req.username, req.sni, req.tenantId]) text += f === undefined ? '|-' : `|${f.length}:${f}`;
    return crypto.hash('sha256', text, 'base64');
  }

  /** The auth event of a decision, but for its time; none when the decision names no tenant. */
  function authEventOf(req: AuthenticateRequest, r: Recorded): Omit<AuthEventRow, 'time'> | undefined {
    if (!r.tenantId) return undefined;
    const { decision } = r;
    const device = decision.result === 'allow' ? decision.device : r.device;
    return {
      tenantId: r.tenantId,
      result: decision.result,
      reason: decision.result === 'deny' ? decision.reason : undefined,
      message: decision.result === 'deny' ? decision.message : `device ${device!.name} authenticated (${decision.matchedBy})`,
      clientId: req.clientId.slice(0, 256),
      deviceId: device?.id,
      deviceName: device?.name,
      fingerprint: r.leaf?.sha256,
    };
  }

  /** Keeps a decision for its next requests, with what answering and recording it again needs. */
  function keep(key: string, req: AuthenticateRequest, r: Recorded, generation: number, now: Date): void {
    const event = authEventOf(req, r);
    if (event) r.encodeEvent = authEventEncoder(event);
    decisions.set(key, { generation, expires: now.getTime() + CACHE_TTL_SECONDS * 1000, resolution: r });
  }

  function record(req: AuthenticateRequest, r: Recorded, now: Date, started: bigint): void {
    const { decision } = r;
    const reason = decision.result === 'deny' ? decision.reason : undefined;
    metrics?.verifierDecisions.labels(decision.result, reason ?? '').inc();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    metrics?.verifierDuration.labels(decision.result).observe(seconds);
    const device = decision.result === 'allow' ? decision.device : r.device;
    // The caller's line (the HTTP request, the MQTT CONNECT) carries the decision at info; this one
    // adds the verifier's own timing at debug. Checked first: the fields would be gathered for nothing.
    if (logger && logger.isLevelEnabled?.('debug') !== false) logger.debug(
      {
        tenantId: r.tenantId,
        deviceId: device?.id,
        deviceName: device?.name,
        clientId: req.clientId,
        result: decision.result,
        reason,
        responseTimeMs: Math.round(seconds * 1e6) / 1e3,
      },
      'auth decision',
    );
    const event = r.encodeEvent ? undefined : authEventOf(req, r);
    const encode = r.encodeEvent ?? (event && authEventEncoder(event));
    if (encode) authEvents.add(encode(now));
    // Every leaf that authenticates is a sighting: new CA-issued leaves become OBSERVED credentials
    // (rotation history), known ones, whichever their source, get `lastSeenAt`.
    if (decision.result === 'allow' && r.leaf) {
      const leaf = r.leaf;
      observed.add({
        credentialsId: leaf.sha256,
        tenantId: decision.tenantId,
        deviceId: decision.device.id,
        certDer: leaf.der,
        subject: leaf.subject,
        issuer: leaf.issuer,
        serialNumber: leaf.serialNumberHex,
        notBefore: leaf.notBefore,
        notAfter: leaf.notAfter,
        seenAt: now,
      });
    }
  }

  /** Whether a certificate of the chain cannot be parsed (a deny that needs no store). */
  function unreadable(req: AuthenticateRequest): boolean {
    try {
      for (const c of req.certificateChain) cache.parse(c, false);
      return false;
    } catch {
      return true;
    }
  }

  const verifier: Verifier & {
    decide(req: AuthenticateRequest, opts?: DecideOptions): Promise<Resolution>;
    recheck(req: AuthenticateRequest): Promise<Decision>;
    flush(): Promise<void>;
    close(): Promise<void>;
  } = {
    async authenticate(req: AuthenticateRequest): Promise<Decision> {
      const started = process.hrtime.bigint();
      // Before anything kept is used: every change committed before this request is applied. A
      // chain that cannot even be read is refused without the store.
      await deps.state?.current().catch((err: unknown) => {
        if (!unreadable(req)) throw err;
      });
      const now = clock();
      const key = cacheKey(req);
      const found = decisionCache ? decisions.get(key) : undefined;
      const hit = found && found.expires > now.getTime() ? found : undefined;
      let r: Recorded;
      if (hit && hit.generation === cache.generation && (!hit.resolution.leaf || hit.resolution.leaf.notAfter > now)) {
        r = hit.resolution;
        cacheHits?.inc();
      } else {
        cacheMisses?.inc();
        const generation = cache.generation;
        // A chain's decision is kept from the first time it is seen, and its parsed leaf with it.
        const decided = await decide(req, req.tenantId === undefined ? { keepLeaf: true } : { keepLeaf: true, tenantId: req.tenantId });
        const { leaf, ...rest } = decided;
        r = leaf ? { ...rest, leaf: leafFacts(leaf) } : decided;
        // A decision made while a change arrived may be stale: do not keep it.
        if (decisionCache && generation === cache.generation) keep(key, req, r, generation, now);
      }
      record(req, r, now, started);
      return r.decision;
    },
    /** A decision on its own (the explain endpoint), on a current trust state as `authenticate`'s. */
    async decide(req: AuthenticateRequest, opts?: DecideOptions): Promise<Resolution> {
      await deps.state?.current();
      return decide(req, opts);
    },
    async recheck(req: AuthenticateRequest): Promise<Decision> {
      await deps.state?.current();
      const { decision, wouldRegister } = await decide(req, { dryRun: true });
      if (decision.result === 'allow' && wouldRegister) {
        return { result: 'deny', reason: 'DEVICE_NOT_FOUND', message: 'the device of this session no longer exists' };
      }
      return decision;
    },
    async flush() {
      await observed.flush();
      await authEvents.flush();
    },
    async close() {
      // Both wait at once: a database that is away costs the wait once, not twice.
      await Promise.all([observed.close(), authEvents.close()]);
    },
  };
  return verifier;
}
export type CertgateVerifier = ReturnType<typeof createVerifier>;
