/**
 * One load generator process of `npm run bench:mqtt`. It runs `concurrency` loops, each doing
 * one MQTT connection after another on raw `tls.connect`: TLS handshake with a device
 * certificate, a hand-built MQTT 3.1.1 CONNECT, wait for CONNACK, DISCONNECT, close, next.
 * Nothing MQTT-library-sized runs here, so the generator costs as little CPU per connection as
 * Node allows and the broker under test stays the bottleneck.
 *
 * The parent sends one `run` message per phase (warm-up, measured) and gets back the count of
 * CONNACKs, refusals, errors and every CONNACK latency (TLS handshake included) of that phase.
 */
import tls from 'node:tls';

export interface LoadDevice {
  name: string;
  certPem: string;
  keyPem: string;
}

export interface RunMessage {
  type: 'run';
  port: number;
  durationMs: number;
  /** Loops in this process. */
  concurrency: number;
  /** Index of this process's first loop among all loops of all generator processes. */
  offset: number;
  /** Loops of all generator processes together. */
  total: number;
}

export interface RunResult {
  type: 'result';
  accepted: number;
  refused: number;
  errors: number;
  /** CONNACK latencies in ms, from tls.connect to the CONNACK's arrival. */
  latencies: Float64Array;
  firstError?: string;
}

/** MQTT 3.1.1 CONNECT (3.1): clean session, keep-alive 60 s, client id only. */
export function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId, 'utf8');
  const variable = Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c]);
  const remaining = variable.length + 2 + id.length;
  if (remaining > 127) throw new Error('client id too long for a one-byte remaining length');
  return Buffer.concat([Buffer.from([0x10, remaining]), variable, Buffer.from([id.length >> 8, id.length & 0xff]), id]);
}

const DISCONNECT = Buffer.from([0xe0, 0x00]);

let contexts: Array<{ context: tls.SecureContext; connect: Buffer }> = [];

process.on('message', (m: { type: 'devices'; devices: LoadDevice[] } | RunMessage) => {
  if (m.type === 'devices') {
    contexts = m.devices.map((d) => ({
      context: tls.createSecureContext({ cert: d.certPem, key: d.keyPem }),
      connect: connectPacket(d.name),
    }));
    process.send!({ type: 'ready' });
    return;
  }
  void run(m).then((r) => process.send!(r));
});

function run(m: RunMessage): Promise<RunResult> {
  const latencies: number[] = [];
  let accepted = 0;
  let refused = 0;
  let errors = 0;
  let firstError: string | undefined;
  const until = performance.now() + m.durationMs;
  let live = m.concurrency;

  return new Promise((resolve) => {
    const finish = () => {
      if (--live > 0) return;
      resolve({ type: 'result', accepted, refused, errors, latencies: Float64Array.from(latencies), ...(firstError ? { firstError } : {}) });
    };

    const loop = (slot: number, round: number) => {
      if (performance.now() >= until) return finish();
      // Each loop walks its own residue class of the devices (their count is a multiple of
      // `total`), so two loops never use the same client id at once.
      const d = contexts[(m.offset + slot + round * m.total) % contexts.length]!;
      const started = performance.now();
      let done = false;
      const socket = tls.connect({ host: '127.0.0.1', port: m.port, secureContext: d.context, rejectUnauthorized: false });
      socket.setNoDelay(true);
      const next = (outcome: 'accepted' | 'refused' | 'error', err?: Error) => {
        if (done) return;
        done = true;
        if (outcome === 'accepted') {
          accepted++;
          latencies.push(performance.now() - started);
          socket.end(DISCONNECT);
        } else {
          if (outcome === 'refused') refused++;
          else {
            errors++;
            firstError ??= err?.message ?? 'closed before CONNACK';
          }
          socket.destroy();
        }
        setImmediate(() => loop(slot, round + 1));
      };
      socket.once('secureConnect', () => socket.write(d.connect));
      socket.on('data', (chunk: Buffer) => {
        // CONNACK: 0x20 0x02 <flags> <return code>; it arrives in one TLS record.
        if (chunk.length >= 4 && chunk[0] === 0x20) next(chunk[3] === 0 ? 'accepted' : 'refused');
        else next('error', new Error(`unexpected bytes ${chunk.subarray(0, 8).toString('hex')}`));
      });
      socket.on('error', (err) => next('error', err));
      socket.on('close', () => next('error'));
    };
    for (let slot = 0; slot < m.concurrency; slot++) loop(slot, 0);
  });
}
