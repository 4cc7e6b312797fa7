/**
 * One worker process of a multi-process MQTT listener (mqtt-cluster.ts). The primary sends what
 * to start; the worker builds its own verifier, kill switch and connection recorder
 * (listener-deps.ts), joins the bus, takes the retained messages so far, and listens on the port
 * it shares with the other workers. It stops when the primary says so or goes away.
 */
import cluster from 'node:cluster';
import type pino from 'pino';
import { createLogger } from '../lib/logger.js';
import { createMetrics, mqttMetricsSink, type Metrics } from '../plugins/metrics.js';
import { listenerDependencies } from './listener-deps.js';
import { workerBus, type ToPrimary, type ToWorker, type WorkerSpec } from './mqtt-cluster.js';
import { createMqttListener, type MqttListener } from './mqtt-listener.js';

if (!cluster.isWorker) throw new Error('mqtt-worker is started by the MQTT cluster primary');

const STATS_INTERVAL_MS = 1_000;
const closers: Array<() => Promise<unknown>> = [];
let listener: MqttListener | undefined;
/** This worker's verifier metrics (and process figures), summed into the main process's at scrape time. */
const metrics: Metrics = createMetrics();
let stopping = false;

const send = (m: ToPrimary): void => {
  if (process.connected) process.send!(m, undefined, undefined, () => {});
};

async function start(spec: WorkerSpec): Promise<void> {
  const log = createLogger({ LOG_LEVEL: spec.logLevel as pino.LevelWithSilent, LOG_FORMAT: spec.logFormat }).child({ worker: cluster.worker!.id });
  const deps = await listenerDependencies(spec.source, log, closers, metrics);
  const bus = workerBus(spec.handOverTimeoutMs);
  const l = createMqttListener({
    ...deps,
    ...spec.limits,
    host: spec.host,
    port: spec.port,
    tls: spec.tls,
    logger: log,
    bus,
    metrics: mqttMetricsSink(metrics),
  });
  listener = l;
  // Last, the releases of the sessions the close ended.
  closers.push(async () => bus.flush());
  closers.push(() => l.close());
  await bus.snapshotDone;
  const { port } = await l.listen();
  const timer = setInterval(() => send({ mqtt: 'stats', stats: { ...l.stats } }), STATS_INTERVAL_MS);
  timer.unref();
  closers.push(async () => clearInterval(timer));
  send({ mqtt: 'listening', port });
}

async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  for (const c of closers.reverse()) await c().catch(() => {});
  process.exit(code);
}

process.on('message', (m: ToWorker) => {
  if (m?.mqtt === 'start') {
    start(m.spec).catch((err: Error) => {
      send({ mqtt: 'failed', error: err.message });
      void stop(1);
    });
  } else if (m?.mqtt === 'stats?' && listener) {
    send({ mqtt: 'stats', stats: { ...listener.stats }, requestId: m.requestId });
  } else if (m?.mqtt === 'metrics?') {
    void metrics.registry.getMetricsAsJSON().then((snapshot) => send({ mqtt: 'metrics', metrics: snapshot, requestId: m.requestId }));
  } else if (m?.mqtt === 'stop') {
    void stop(0);
  }
});

// The primary decides when workers stop: a Ctrl-C reaches the whole process group, and the
// primary then closes everything in order. Without a primary there is nothing left to serve.
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
process.on('disconnect', () => void stop(0));
send({ mqtt: 'ready' });
