/**
 * End to end with the real verifier: `certgate api` and `certgate mqtt` in separate processes on
 * one PostgreSQL (the listener asks the API's verifier over HTTP and follows session drops with
 * LISTEN/NOTIFY), certificates made with the openssl CLI the way the seed guides make them, and
 * MQTT.js / mosquitto clients over real TLS.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { promisify } from 'node:util';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { caConfig } from '../helpers/openssl.js';
import { apiOk, startService, type Service } from '../helpers/service.js';

const run = promisify(execFile);

export const MGMT = 'management/admin:e2e-management-pass';
const VERIFIER_TOKEN = 'e2e-verifier-token-0123456789abcdef';

export interface Split {
  api: Service;
  mqtt: Service;
  http: string;
  mqttPort: number;
  serverCa: Buffer;
  serverCaPath: string;
  /** A scratch directory for certificates, removed after the file's tests. */
  dir: string;
  /** The database both processes use. */
  databaseUrl: string;
}

/** `certgate api` and `certgate mqtt` for the test file, on a database of the test PostgreSQL. */
export function splitForFile(): () => Split {
  let split: Split | undefined;
  let db: TestDatabase | undefined;
  const started: Service[] = [];
  let dir = '';
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-e2e-'));
    db = await createTestDatabase();
    const api = await startService({
      mode: 'api',
      env: { DATABASE_URL: db.url, VERIFIER_TOKEN, MANAGEMENT_ADMIN_PASSWORD: MGMT.split(':')[1]! },
    });
    started.push(api);
    const mqtt = await startService({
      mode: 'mqtt',
      env: { DATABASE_URL: db.url, VERIFIER_TOKEN, VERIFIER_URL: api.httpUrl },
    });
    started.push(mqtt);
    split = {
      api,
      mqtt,
      http: api.httpUrl,
      mqttPort: mqtt.mqttPort,
      serverCa: await fs.readFile(mqtt.serverCaPath),
      serverCaPath: mqtt.serverCaPath,
      dir,
      databaseUrl: db.url,
    };
  });
  after(async () => {
    for (const s of started.reverse()) await s.stop();
    await db?.drop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });
  return () => {
    if (!split) throw new Error('services not started');
    return split;
  };
}

export interface TenantLogin {
  id: string;
  auth: string;
  base: string;
}

let tenantSeq = 0;

export async function createTenant(http: string, prefix: string): Promise<TenantLogin> {
  const id = `${prefix}-${process.pid.toString(36)}-${(tenantSeq++).toString(36)}`.slice(0, 32);
  await apiOk(http, 'POST', '/tenant/tenants', MGMT, {
    id,
    company: `${prefix} Inc`,
    domain: `${id}.example.com`,
    adminName: 'admin',
    adminPass: 'tenant-admin-pass',
  });
  return { id, auth: `${id}/admin:tenant-admin-pass`, base: `/tenant/tenants/${id}` };
}

/** Uploads a CA (PEM with its line breaks removed, as the Cumulocity guide says). Returns its fingerprint. */
export async function trust(
  http: string,
  tenant: TenantLogin,
  pem: string,
  extra: { autoRegistrationEnabled?: boolean | string; deviceProfileId?: string; name?: string } = {},
): Promise<string> {
  const body = await apiOk(http, 'POST', `${tenant.base}/trusted-certificates`, tenant.auth, {
    status: 'ENABLED',
    autoRegistrationEnabled: 'true',
    certInPemFormat: pem.replace(/\r?\n/g, ''),
    ...extra,
  });
  return body.fingerprint as string;
}

// -------------------------------------------------------------------------------------------
// openssl, as the guides use it (EC P-256 and RSA 2048 keys keep it quick)

export async function openssl(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await run('openssl', args, { cwd });
  return stdout;
}

let fileSeq = 0;
const read = (dir: string, f: string) => fs.readFile(path.join(dir, f), 'utf8');

export interface DeviceFiles {
  dir: string;
  certPath: string;
  keyPath: string;
  /** Leaf then issuers, as the device sends them. */
  chainPath: string;
  certPem: string;
  /** Serial as openssl prints it (upper-case hex). */
  serialHex: string;
}

async function serialOf(dir: string, certPath: string): Promise<string> {
  return (await openssl(dir, 'x509', '-in', certPath, '-noout', '-serial')).trim().split('=')[1]!;
}

export interface GuideCa {
  dir: string;
  certPem: string;
}

/** Cumulocity / MindConnect: `caConfig.cnf`, `openssl req -x509 -extensions v3_ca` (RSA 2048). */
export async function cumulocityCa(parent: string, cn: string): Promise<GuideCa> {
  const dir = await fs.mkdtemp(path.join(parent, 'c8y-ca-'));
  await fs.writeFile(path.join(dir, 'caConfig.cnf'), caConfig(dir));
  await fs.writeFile(path.join(dir, 'database.txt'), '');
  await fs.writeFile(path.join(dir, 'serial'), '1000\n');
  await fs.mkdir(path.join(dir, 'deviceCertificates'));
  await fs.mkdir(path.join(dir, 'crl'));
  await openssl(dir, 'genrsa', '-out', 'caKey.pem', '2048');
  await openssl(dir, 'req', '-config', 'caConfig.cnf', '-key', 'caKey.pem', '-new', '-x509', '-days', '7300', '-sha256',
    '-extensions', 'v3_ca', '-subj', `/O=certgate e2e/CN=${cn}`, '-out', 'caCert.pem');
  return { dir, certPem: await read(dir, 'caCert.pem') };
}

/** A device of a Cumulocity-style CA: `openssl ca -extensions v3_signed`, CN = the client id. */
export async function cumulocityDevice(ca: GuideCa, cn: string): Promise<DeviceFiles> {
  const base = path.join('deviceCertificates', `${cn}-${fileSeq++}`);
  await openssl(ca.dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${base}Key.pem`);
  await openssl(ca.dir, 'req', '-config', 'caConfig.cnf', '-new', '-sha256', '-key', `${base}Key.pem`, '-subj', `/CN=${cn}`, '-out', `${base}Csr.pem`);
  await openssl(ca.dir, 'ca', '-batch', '-config', 'caConfig.cnf', '-extensions', 'v3_signed', '-days', '365', '-notext',
    '-md', 'sha256', '-in', `${base}Csr.pem`, '-out', `${base}Cert.pem`);
  await fs.writeFile(path.join(ca.dir, `${base}Chain.pem`), (await read(ca.dir, `${base}Cert.pem`)) + ca.certPem);
  return {
    dir: ca.dir,
    certPath: path.join(ca.dir, `${base}Cert.pem`),
    keyPath: path.join(ca.dir, `${base}Key.pem`),
    chainPath: path.join(ca.dir, `${base}Chain.pem`),
    certPem: await read(ca.dir, `${base}Cert.pem`),
    serialHex: await serialOf(ca.dir, `${base}Cert.pem`),
  };
}

export interface ThingsboardChain {
  dir: string;
  rootPem: string;
  intermediatePem: string;
  /** A device signed by the intermediate (`openssl x509 -req`, version 1), chain leaf -> root. */
  device(cn: string, issuer?: 'intermediate' | 'root'): Promise<DeviceFiles>;
}

/** ThingsBoard's chain guide: root, intermediate with `basicConstraints=CA:TRUE`, devices (EC P-256). */
export async function thingsboardChain(parent: string, rootCn = 'company.com', intermediateCn = 'group.company.com'): Promise<ThingsboardChain> {
  const dir = await fs.mkdtemp(path.join(parent, 'tb-'));
  await openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', 'rootKey.pem',
    '-out', 'rootCert.pem', '-sha256', '-days', '365', '-nodes', '-subj', `/CN=${rootCn}`);
  await openssl(dir, 'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', 'intermediateKey.pem',
    '-out', 'intermediate.csr', '-sha256', '-nodes', '-subj', `/CN=${intermediateCn}`);
  await fs.writeFile(path.join(dir, 'ca.ext'), 'basicConstraints=CA:TRUE\n');
  await openssl(dir, 'x509', '-req', '-in', 'intermediate.csr', '-out', 'intermediateCert.pem', '-CA', 'rootCert.pem',
    '-CAkey', 'rootKey.pem', '-days', '365', '-sha256', '-CAcreateserial', '-extfile', 'ca.ext');
  const rootPem = await read(dir, 'rootCert.pem');
  const intermediatePem = await read(dir, 'intermediateCert.pem');
  let n = 0;
  return {
    dir,
    rootPem,
    intermediatePem,
    async device(cn, issuer = 'intermediate') {
      const base = `device${n++}`;
      const [caCert, caKey] = issuer === 'root' ? ['rootCert.pem', 'rootKey.pem'] : ['intermediateCert.pem', 'intermediateKey.pem'];
      await openssl(dir, 'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', `${base}Key.pem`,
        '-out', `${base}.csr`, '-sha256', '-nodes', '-subj', `/CN=${cn}`);
      await openssl(dir, 'x509', '-req', '-in', `${base}.csr`, '-out', `${base}Cert.pem`, '-CA', caCert, '-CAkey', caKey,
        '-days', '365', '-sha256', '-CAcreateserial');
      const leaf = await read(dir, `${base}Cert.pem`);
      await fs.writeFile(path.join(dir, `${base}Chain.pem`), leaf + (issuer === 'root' ? rootPem : intermediatePem + rootPem));
      return {
        dir,
        certPath: path.join(dir, `${base}Cert.pem`),
        keyPath: path.join(dir, `${base}Key.pem`),
        chainPath: path.join(dir, `${base}Chain.pem`),
        certPem: leaf,
        serialHex: await serialOf(dir, `${base}Cert.pem`),
      };
    },
  };
}

export interface AmqttCa {
  dir: string;
  certPem: string;
  /** A device with the SAN URI `spiffe://<domain>/device/<deviceId>` (and a CN of `cn`); `san: false` leaves it out. */
  device(deviceId: string, cn?: string, opts?: { san?: boolean }): Promise<DeviceFiles>;
}

/** amqtt's ca_creds / device_creds, done with openssl: a root, devices with a SPIFFE SAN URI. */
export async function amqttCa(parent: string, domain: string): Promise<AmqttCa> {
  const dir = await fs.mkdtemp(path.join(parent, 'amqtt-'));
  await openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', 'ca.key', '-out', 'ca.crt',
    '-sha256', '-days', '365', '-nodes', '-subj', `/C=US/O=My Org's Name/CN=${domain}`,
    '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  const certPem = await read(dir, 'ca.crt');
  return {
    dir,
    certPem,
    async device(deviceId, cn = deviceId, opts = {}) {
      const san = opts.san === false ? '' : `subjectAltName=URI:spiffe://${domain}/device/${deviceId}\n`;
      await fs.writeFile(path.join(dir, `${deviceId}.ext`), `${san}extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n`);
      await openssl(dir, 'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', `${deviceId}.key`,
        '-out', `${deviceId}.csr`, '-nodes', '-subj', `/C=US/O=My Org's Name/CN=${cn}`);
      await openssl(dir, 'x509', '-req', '-in', `${deviceId}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
        '-days', '365', '-sha256', '-out', `${deviceId}.crt`, '-extfile', `${deviceId}.ext`);
      const leaf = await read(dir, `${deviceId}.crt`);
      await fs.writeFile(path.join(dir, `${deviceId}.chain.pem`), leaf + certPem);
      return {
        dir,
        certPath: path.join(dir, `${deviceId}.crt`),
        keyPath: path.join(dir, `${deviceId}.key`),
        chainPath: path.join(dir, `${deviceId}.chain.pem`),
        certPem: leaf,
        serialHex: await serialOf(dir, `${deviceId}.crt`),
      };
    },
  };
}

/** TLS options for MQTT.js from a device's files. */
export async function tlsOf(s: Split, d: DeviceFiles, chain = true): Promise<{ port: number; serverCa: Buffer; cert: Buffer; key: Buffer }> {
  return {
    port: s.mqttPort,
    serverCa: s.serverCa,
    cert: await fs.readFile(chain ? d.chainPath : d.certPath),
    key: await fs.readFile(d.keyPath),
  };
}

// -------------------------------------------------------------------------------------------
// mosquitto clients

export interface Tool {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

export function mosquitto(cmd: 'mosquitto_pub' | 'mosquitto_sub', s: Split, d: DeviceFiles, args: string[]): Tool {
  const child = spawn(cmd, ['-h', 'localhost', '-p', String(s.mqttPort), '--cafile', s.serverCaPath, '--cert', d.chainPath, '--key', d.keyPath, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  // `close`, not `exit`: the tool's last lines are read by then.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  void exited.then(() => clearTimeout(timer));
  return { child, output: () => out, exited };
}

/** The tenant's auth events, newest first, once at least `n` match (read as `login`, the tenant admin by default). */
export async function authEvents(http: string, t: TenantLogin, query: string, n: number, login = t.auth): Promise<Array<Record<string, any>>> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const events = (await apiOk(http, 'GET', `${t.base}/auth-events?pageSize=50&${query}`, login)).events as Array<Record<string, any>>;
    if (events.length >= n) return events;
    if (Date.now() > deadline) throw new Error(`only ${events.length} auth events for ${query}, wanted ${n}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
