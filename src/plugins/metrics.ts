import client from 'prom-client';

/** One process's metrics as `registry.getMetricsAsJSON()` gives them. */
export type MetricsSnapshot = Awaited<ReturnType<client.Registry['getMetricsAsJSON']>>;

export interface MqttCounts {
  connections: number;
  accepted: number;
  notAuthorized: number;
  serverUnavailable: number;
}

/**
 * Prometheus metrics of one certgate process. A registry per process object,
 * not prom-client's global one, so several apps can live in one test process.
 */
export function createMetrics() {
  const registry = new client.Registry();
  let listener: () => MqttCounts = () => ({ connections: 0, accepted: 0, notAuthorized: 0, serverUnavailable: 0 });
  let others: () => Promise<MetricsSnapshot[]> = async () => [];
  client.collectDefaultMetrics({ register: registry });
  return {
    registry,
    httpDuration: new client.Histogram({
      name: 'certgate_http_request_duration_seconds',
      help: 'HTTP request latency',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    verifierDecisions: new client.Counter({
      name: 'certgate_verifier_decisions_total',
      help: 'Verifier decisions by result and reason',
      labelNames: ['result', 'reason'] as const,
      registers: [registry],
    }),
    verifierDuration: new client.Histogram({
      name: 'certgate_verifier_duration_seconds',
      help: 'Verifier decision latency',
      labelNames: ['result'] as const,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers: [registry],
    }),
    verifierCache: new client.Counter({
      name: 'certgate_verifier_cache_total',
      help: 'Verifier requests answered from the decision cache (hit) or decided (miss)',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    recordsDropped: new client.Counter({
      name: 'certgate_records_dropped_total',
      help:
        'Records that could not be kept until the database took them: auth events and sightings (observed credentials, ' +
        'lastConnectedAt), dropped because the queue was full or still unwritten when shutdown stopped waiting',
      labelNames: ['record', 'reason'] as const,
      registers: [registry],
    }),
    mqttConnections: new client.Gauge({
      name: 'certgate_mqtt_connections',
      help: 'Live MQTT connections',
      registers: [registry],
      collect() {
        this.set(listener().connections);
      },
    }),
    mqttConnects: new client.Counter({
      name: 'certgate_mqtt_connects_total',
      help: 'MQTT CONNECTs answered, by outcome',
      labelNames: ['outcome'] as const,
      registers: [registry],
      collect() {
        const c = listener();
        this.reset();
        this.labels('accepted').inc(c.accepted);
        this.labels('not_authorized').inc(c.notAuthorized);
        this.labels('server_unavailable').inc(c.serverUnavailable);
      },
    }),
    mqttPublishDenied: new client.Counter({
      name: 'certgate_mqtt_publish_denied_total',
      help: 'MQTT publications (wills included) refused and dropped, by tenant and reason',
      labelNames: ['tenant', 'reason'] as const,
      registers: [registry],
    }),
    mqttLimitHits: new client.Counter({
      name: 'certgate_mqtt_limit_hits_total',
      help: 'MQTT clients that ran into a listener limit, by limit',
      labelNames: ['limit'] as const,
      registers: [registry],
    }),
    mqttMessagesDropped: new client.Counter({
      name: 'certgate_mqtt_messages_dropped_total',
      help: 'MQTT messages not delivered to a subscriber (or not retained), by tenant and reason',
      labelNames: ['tenant', 'reason'] as const,
      registers: [registry],
    }),
    /** Where the MQTT metrics read from at scrape time: the listener's own counters. */
    observeMqttListener(source: () => MqttCounts): void {
      listener = source;
    },
    /** Metrics of other processes (the MQTT workers) to add to this one's at scrape time. */
    observeOtherProcesses(source: () => Promise<MetricsSnapshot[]>): void {
      others = source;
    },
    /**
     * The Prometheus text of this process, summed with the other processes': counters, histograms
     * and process figures add up (prom-client's aggregation), so one scrape covers them all.
     */
    async render(): Promise<string> {
      const extra = await others();
      if (extra.length === 0) return registry.metrics();
      return client.AggregatorRegistry.aggregate([await registry.getMetricsAsJSON(), ...extra]).metrics();
    },
  };
}
export type Metrics = ReturnType<typeof createMetrics>;

/** The listener's counters, fed into this process's metrics. */
export function mqttMetricsSink(m: Pick<Metrics, 'mqttPublishDenied' | 'mqttLimitHits' | 'mqttMessagesDropped'>) {
  return {
    publishDenied: (tenant: string, reason: string) => m.mqttPublishDenied.labels(tenant, reason).inc(),
    limitHit: (limit: string) => m.mqttLimitHits.labels(limit).inc(),
    messageDropped: (tenant: string, reason: string) => m.mqttMessagesDropped.labels(tenant, reason).inc(),
  };
}
