/**
 * The listener's TLS certificate: MQTT_TLS_CERT/MQTT_TLS_KEY when configured,
 * otherwise a CA and a server certificate made once under `<dataDir>/tls/` and reused on every
 * later start, so `npm start` works out of the box and clients can trust `ca.crt`.
 *
 * The CA's private key is not kept: nothing else should ever be signed with it. When the
 * server certificate expires (ten years on) a new pair is made and clients need the new ca.crt.
 */
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createCa, createServer } from '../certs/certs-service.js';

export interface ServerTls {
  certPath: string;
  keyPath: string;
  /** Absent when the certificate was configured rather than made here. */
  caPath?: string;
  cert: string;
  key: string;
  ca?: string;
  /** True when this call made the files. */
  generated: boolean;
  notAfter: Date;
}

export interface ServerTlsOptions {
  dataDir: string;
  /** MQTT_TLS_CERT / MQTT_TLS_KEY: used as they are when both are given. */
  certPath?: string;
  keyPath?: string;
  /** Host name for the SAN; default `os.hostname()`. */
  hostname?: string;
  /** Told about a certificate set aside because it was incomplete or expired. */
  warn?: (message: string) => void;
}

const FILES = { ca: 'ca.crt', cert: 'server.crt', key: 'server.key' } as const;
const VALIDITY_DAYS = 3650;

export async function resolveServerTls(opts: ServerTlsOptions): Promise<ServerTls> {
  if (opts.certPath && opts.keyPath) return loadConfigured(opts.certPath, opts.keyPath);
  const dir = path.join(opts.dataDir, 'tls');
  const existing = await loadGenerated(dir);
  if (existing.ok) return existing.tls;
  if (existing.problem !== 'absent') {
    // Keep what was there for inspection rather than deleting it.
    const aside = `${dir}.${existing.problem}-${Date.now()}`;
    await fs.rename(dir, aside);
    opts.warn?.(`MQTT server certificate in ${dir} was ${existing.problem}; moved to ${aside} and made a new one`);
  }
  const won = await generate(dir, opts.hostname ?? os.hostname());
  const made = await loadGenerated(dir);
  if (!made.ok) throw new Error(`could not create the MQTT server certificate in ${dir} (${made.problem})`);
  return { ...made.tls, generated: won };
}

async function loadConfigured(certPath: string, keyPath: string): Promise<ServerTls> {
  const [cert, key] = await Promise.all([fs.readFile(certPath, 'utf8'), fs.readFile(keyPath, 'utf8')]);
  const x509 = new X509Certificate(cert);
  if (!x509.checkPrivateKey(createPrivateKey(key))) {
    throw new Error(`MQTT_TLS_KEY (${keyPath}) is not the key of MQTT_TLS_CERT (${certPath})`);
  }
  return { certPath, keyPath, cert, key, generated: false, notAfter: new Date(x509.validTo) };
}

type Loaded = { ok: true; tls: ServerTls } | { ok: false; problem: 'absent' | 'incomplete' | 'expired' };

async function loadGenerated(dir: string): Promise<Loaded> {
  const read = (f: string) => fs.readFile(path.join(dir, f), 'utf8').catch(() => undefined);
  const [ca, cert, key] = await Promise.all([read(FILES.ca), read(FILES.cert), read(FILES.key)]);
  if (ca === undefined && cert === undefined && key === undefined) {
    const exists = await fs.stat(dir).then(
      () => true,
      () => false,
    );
    return { ok: false, problem: exists ? 'incomplete' : 'absent' };
  }
  if (ca === undefined || cert === undefined || key === undefined) return { ok: false, problem: 'incomplete' };
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
    if (!x509.checkPrivateKey(createPrivateKey(key))) return { ok: false, problem: 'incomplete' };
  } catch {
    return { ok: false, problem: 'incomplete' };
  }
  const notAfter = new Date(x509.validTo);
  if (notAfter.getTime() <= Date.now()) return { ok: false, problem: 'expired' };
  return {
    ok: true,
    tls: {
      certPath: path.join(dir, FILES.cert),
      keyPath: path.join(dir, FILES.key),
      caPath: path.join(dir, FILES.ca),
      cert,
      key,
      ca,
      generated: false,
      notAfter,
    },
  };
}

/**
 * Writes the three files into a fresh directory and renames it into place, so a reader never sees
 * half a set and two processes starting at once end up sharing one (the second rename fails and
 * that process uses the winner's files).
 */
async function generate(dir: string, hostname: string): Promise<boolean> {
  await fs.mkdir(path.dirname(dir), { recursive: true });
  const ca = await createCa({ cn: `certgate MQTT CA ${hostname}`.slice(0, 64), days: VALIDITY_DAYS });
  // A host name that is not a valid DNS name (e.g. with `_`) cannot be a dNSName SAN (RFC 5280 4.2.1.6).
  const dns = [...new Set(['localhost', hostname].filter((h) => /^[A-Za-z0-9.-]+$/.test(h) && !/^[\d.]+$/.test(h)))];
  const server = await createServer({ issuer: ca, cn: 'localhost', dns, ip: ['127.0.0.1'], days: VALIDITY_DAYS });
  const tmp = `${dir}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await fs.mkdir(tmp, { mode: 0o700 });
  try {
    await fs.writeFile(path.join(tmp, FILES.ca), ca.certPem, { mode: 0o644 });
    await fs.writeFile(path.join(tmp, FILES.cert), server.certPem, { mode: 0o644 });
    await fs.writeFile(path.join(tmp, FILES.key), server.keyPem, { mode: 0o600 });
    await fs.chmod(tmp, 0o755);
    await fs.rename(tmp, dir);
    return true;
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true });
    const code = (err as { code?: string }).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    return false; // another process got there first; its files are used
  }
}
