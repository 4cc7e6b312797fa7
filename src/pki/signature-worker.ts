/**
 * Signature checks on a worker thread, in batches.
 *
 * A P-256 check costs ~50 µs of CPU. On the event loop that is a quarter of a cold request; on
 * libuv's thread pool (`crypto.verify` with a callback) each check wakes an idle pool thread and
 * then the loop, which on the 2-core VMs measured here cost more than the check itself (~25 µs on
 * the loop and ~75 µs on the pool thread per check, against 50 µs in line). Here the checks asked
 * for during one turn of the event loop travel together, in one message each way, to one worker
 * thread that keeps the issuers' keys: the loop pays a few µs per check and the wake-ups are
 * shared by the batch.
 *
 * Only ever an optimisation: when the worker cannot be started or dies, the checks it held are
 * made in line, with the same outcome.
 */
import { Worker } from 'node:worker_threads';
import { verifyParams, type VerifyParams } from './algorithms.js';
import { publicKeyOf, signedBy, type ParsedCertificate } from './certificate.js';

/**
 * A batch travels as two transferred buffers, not as objects to clone: `bytes` holds each check's
 * TBS then signature, one after another, and `meta` four numbers per check: the key's id, the
 * index of its parameters in `params`, the TBS length and the signature length.
 */
const META_FIELDS = 4;

/**
 * The worker's code. It needs nothing but node:crypto, so it is evaluated from this string:
 * the same code runs from the TypeScript sources (tsx) and from the compiled build.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createPublicKey, verify } = require('node:crypto');
let keys = new Map();
parentPort.on('message', (m) => {
  if (m.reset) keys = new Map();
  for (const [id, spki] of m.keys) keys.set(id, createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }));
  const { meta, bytes, params } = m;
  const count = meta.length / ${META_FIELDS};
  const results = new Uint8Array(count);
  let at = 0;
  for (let i = 0; i < count; i++) {
    const key = keys.get(meta[i * ${META_FIELDS}]);
    const p = params[meta[i * ${META_FIELDS} + 1]];
    const tbsEnd = at + meta[i * ${META_FIELDS} + 2];
    const end = tbsEnd + meta[i * ${META_FIELDS} + 3];
    try {
      const k = p.padding === undefined ? key : { key, padding: p.padding, saltLength: p.saltLength };
      results[i] = key !== undefined && verify(p.digest, bytes.subarray(at, tbsEnd), k, bytes.subarray(tbsEnd, end)) ? 1 : 0;
    } catch {
      results[i] = 0;
    }
    at = end;
  }
  parentPort.postMessage({ id: m.id, results }, [results.buffer]);
});
`;

interface Pending {
  issuer: ParsedCertificate;
  subject: ParsedCertificate;
  resolve: (ok: boolean) => void;
}

/** Keys the worker holds before it is told to start over (a key is ~100 bytes of DER). */
const MAX_WORKER_KEYS = 10_000;

/** Workers lost in a row, none of them having answered, after which checks stay in line. */
const MAX_LOST_IN_A_ROW = 3;

export class SignatureWorker {
  #worker: Worker | undefined;
  /** Issuer SHA-256 -> the id the worker knows its key by. */
  #keyIds = new Map<string, number>();
  #nextKeyId = 0;
  #queue: Pending[] = [];
  #scheduled = false;
  #nextBatch = 0;
  readonly #batches = new Map<number, Pending[]>();

  /** Set when the worker cannot run here: every check is then made in line. */
  #broken = false;
  /** Workers lost in a row without answering a batch: a worker that cannot start is not restarted forever. */
  #lostInARow = 0;

  /** Whether `issuer`'s key verifies `subject`'s signature. Never rejects. */
  verify(issuer: ParsedCertificate, subject: ParsedCertificate): Promise<boolean> {
    return new Promise((resolve) => {
      this.#queue.push({ issuer, subject, resolve });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#send());
      }
    });
  }

  /** Stops the worker; checks still out are made in line. */
  async close(): Promise<void> {
    const worker = this.#worker;
    this.#forget();
    if (worker) await worker.terminate();
  }

  #send(): void {
    this.#scheduled = false;
    const batch = this.#queue;
    this.#queue = [];
    const worker = this.#ensureWorker();
    if (!worker) return inLine(batch);
    const keys: Array<[number, Uint8Array]> = [];
    const transfer: ArrayBuffer[] = [];
    // The worker starts over with its keys rather than holding every issuer ever seen.
    const reset = this.#keyIds.size + batch.length > MAX_WORKER_KEYS;
    if (reset) this.#keyIds.clear();
    const sent: Pending[] = [];
    const params: VerifyParams[] = [];
    const meta = new Int32Array(batch.length * META_FIELDS);
    let size = 0;
    for (const p of batch) {
      const key = publicKeyOf(p.issuer);
      const verify = key && verifyParams(p.subject.signatureAlgorithm, key);
      if (!verify) {
        p.resolve(false);
        continue;
      }
      let id = this.#keyIds.get(p.issuer.sha256);
      if (id === undefined) {
        id = this.#nextKeyId++;
        this.#keyIds.set(p.issuer.sha256, id);
        // A copy of its own, so that transferring it detaches nothing else.
        const spki = new Uint8Array(p.issuer.spki);
        keys.push([id, spki]);
        transfer.push(spki.buffer as ArrayBuffer);
      }
      let paramsAt = params.findIndex((q) => q.digest === verify.digest && q.padding === verify.padding && q.saltLength === verify.saltLength);
      if (paramsAt < 0) paramsAt = params.push(verify) - 1;
      const at = sent.length * META_FIELDS;
      meta[at] = id;
      meta[at + 1] = paramsAt;
      meta[at + 2] = p.subject.tbs.length;
      meta[at + 3] = p.subject.signature.length;
      size += p.subject.tbs.length + p.subject.signature.length;
      sent.push(p);
    }
    const bytes = new Uint8Array(size);
    let offset = 0;
    for (const p of sent) {
      bytes.set(p.subject.tbs, offset);
      offset += p.subject.tbs.length;
      bytes.set(p.subject.signature, offset);
      offset += p.subject.signature.length;
    }
    transfer.push(bytes.buffer, meta.buffer);
    // A reset travels even without checks: the worker must forget the keys this side forgot.
    if (!sent.length && !reset) return;
    const id = this.#nextBatch++;
    this.#batches.set(id, sent);
    worker.ref();
    try {
      worker.postMessage({ id, reset, keys, params, meta: meta.subarray(0, sent.length * META_FIELDS), bytes }, transfer);
    } catch {
      this.#batches.delete(id);
      if (this.#batches.size === 0) worker.unref();
      this.#keyIds.clear();
      inLine(sent);
    }
  }

  #ensureWorker(): Worker | undefined {
    if (this.#worker || this.#broken) return this.#worker;
    let worker: Worker;
    try {
      worker = new Worker(WORKER_SOURCE, { eval: true, name: 'certgate-signatures' });
    } catch {
      this.#broken = true;
      return undefined;
    }
    worker.on('message', (m: { id: number; results: Uint8Array }) => {
      const batch = this.#batches.get(m.id);
      this.#batches.delete(m.id);
      this.#lostInARow = 0;
      if (this.#batches.size === 0) worker.unref();
      batch?.forEach((p, i) => p.resolve(m.results[i] === 1));
    });
    const lost = () => {
      if (this.#worker !== worker) return;
      if (++this.#lostInARow >= MAX_LOST_IN_A_ROW) this.#broken = true;
      this.#forget();
    };
    worker.on('error', lost);
    worker.on('exit', lost);
    // An answer that cannot be read would leave its batch waiting: start over, in line.
    worker.on('messageerror', () => {
      if (this.#worker !== worker) return;
      this.#forget();
      void worker.terminate();
    });
    // Idle, the worker never keeps the process alive; with checks out it does (see #send). After
    // the listeners: adding one takes a reference again.
    worker.unref();
    this.#worker = worker;
    return worker;
  }

  /** Drops the worker (the next batch starts a new one) and makes the checks it held in line. */
  #forget(): void {
    this.#worker = undefined;
    this.#keyIds = new Map();
    const held = [...this.#batches.values()].flat();
    this.#batches.clear();
    inLine(held);
  }
}

function inLine(batch: Pending[]): void {
  for (const p of batch) p.resolve(signedBy(p.issuer, p.subject));
}

/** The process's signature worker, started on first use. */
export const signatureWorker = new SignatureWorker();
