/**
 * MQTT.js against a certgate listener over mTLS: connect as a device, collect what it receives,
 * learn why a connection was refused or closed.
 */
import type { TestContext } from 'node:test';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';

export interface DeviceConnectOptions extends IClientOptions {
  port: number;
  /** The CA of the listener's server certificate (PEM). */
  serverCa: string | Buffer;
  /** Device certificate or chain (PEM), and its key. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** A PKCS#12 keystore instead of cert + key. */
  pfx?: Buffer;
  passphrase?: string;
  servername?: string;
}

/** Resolves on CONNACK 0; rejects with MQTT.js's error, whose `code` is the CONNACK code. */
export function connectDevice(t: TestContext | undefined, opts: DeviceConnectOptions): Promise<MqttClient> {
  const { port, serverCa, ...rest } = opts;
  const client = mqtt.connect(`mqtts://localhost:${port}`, {
    ca: serverCa,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    protocolVersion: 4,
    ...rest,
  } as IClientOptions);
  t?.after(() => client.end(true));
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', (err) => {
      client.end(true);
      reject(err);
    });
    client.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

export interface OpenedDevice {
  client: MqttClient;
  /** Every PUBLISH the client received, from the CONNACK on (queued ones arrive right after it). */
  got: IPublishPacket[];
  sessionPresent: boolean;
}

/**
 * A device's client on the listener at `port` whose server certificate `serverCa` issued: MQTT 5
 * unless `opts` say otherwise, keeping what it receives. Resolves on CONNACK 0, rejects with
 * MQTT.js's error.
 */
export function openDevice(t: TestContext, port: number, serverCa: string, opts: IClientOptions): Promise<OpenedDevice> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtts://localhost:${port}`, {
      ca: serverCa,
      protocolVersion: 5,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      ...opts,
    });
    t.after(() => client.end(true));
    const got: IPublishPacket[] = [];
    client.on('message', (_topic, _payload, packet) => got.push(packet));
    client.once('connect', (connack) => resolve({ client, got, sessionPresent: connack.sessionPresent }));
    client.once('error', reject);
  });
}

/** The CONNACK code of a refused connection (5 or 0x87 when not authorized). */
export async function refusedWith(t: TestContext | undefined, opts: DeviceConnectOptions): Promise<number | undefined> {
  try {
    const c = await connectDevice(t, opts);
    c.end(true);
  } catch (err) {
    return (err as { code?: number }).code;
  }
  throw new Error('the connection was accepted');
}

export interface Received {
  topic: string;
  payload: string;
}

export function collect(client: MqttClient): Received[] {
  const got: Received[] = [];
  client.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
  return got;
}

/** Resolves with the milliseconds until the client's connection closes. */
export function closedWithin(client: MqttClient): Promise<number> {
  const start = Date.now();
  return new Promise((resolve) => {
    if (!client.connected) resolve(0);
    client.once('close', () => resolve(Date.now() - start));
  });
}

/** SUBSCRIBE and the SUBACK codes, failures included (MQTT.js turns those into an error). */
export function suback(client: MqttClient, topics: Record<string, { qos: 0 | 1 }>): Promise<number[]> {
  return new Promise((resolve, reject) => {
    client.subscribe(topics, (err, _granted, packet) => {
      const codes = (packet as { granted?: number[] } | undefined)?.granted;
      if (codes) resolve(codes);
      else reject(err ?? new Error('no SUBACK'));
    });
  });
}
