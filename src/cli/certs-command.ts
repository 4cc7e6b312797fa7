/**
 * `certgate certs ca|intermediate|server|device|pop`: the files amqtt's ca_creds/server_creds/
 * device_creds and the Cumulocity openssl recipes make, without openssl. Thin: parse the
 * arguments, read the issuer, call src/certs, write the files. Usage errors and refusals print
 * one line on stderr and exit with status 2.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import {
  CertsError,
  assertUsableIssuer,
  createCa,
  createDevice,
  createIntermediate,
  createServer,
  keyMatchesCertificate,
  loadIssuer,
  signPopCode,
  toPkcs12,
  type CertificateFacts,
  type Credentials,
  type Issuer,
  type IssuerCheck,
  type KeySpec,
  type SanEntry,
  type SubjectFields,
  type ValidityOptions,
} from '../certs/certs-service.js';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | string[] | undefined>;
type LoadedIssuer = Issuer & { facts: CertificateFacts };

export interface CommandIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  cwd: string;
}

const defaultIo: CommandIo = {
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
  cwd: process.cwd(),
};

/** A refusal or usage error: one line on stderr, exit status 2. */
class UsageError extends Error {}

// ---------------------------------------------------------------------------------------------
// Options, per subcommand

const SUBJECT: Options = {
  cn: { type: 'string' },
  org: { type: 'string' },
  'org-name': { type: 'string' }, // amqtt's spelling
  ou: { type: 'string' },
  country: { type: 'string' },
  state: { type: 'string' },
  locality: { type: 'string' },
};
const KEY: Options = {
  key: { type: 'string' },
  'rsa-bits': { type: 'string' },
};
const VALIDITY: Options = {
  days: { type: 'string' },
  'not-before': { type: 'string' },
  'not-after': { type: 'string' },
};
const OUTPUT: Options = {
  'out-dir': { type: 'string' },
  'output-dir': { type: 'string' }, // amqtt's spelling
  name: { type: 'string' },
  force: { type: 'boolean' },
  p12: { type: 'boolean' },
  password: { type: 'string' },
  'password-file': { type: 'string' },
  alias: { type: 'string' },
};
const ISSUER: Options = {
  'ca-cert': { type: 'string' },
  'ca-crt': { type: 'string' }, // amqtt's spelling
  'ca-key': { type: 'string' },
  'ca-key-password': { type: 'string' },
};
const HELP: Options = { help: { type: 'boolean', short: 'h' } };

const COMMON_HELP = `
Subject:
  --cn NAME               common name
  --org NAME              organization (O); also --org-name
  --ou NAME               organizational unit (OU)
  --country CC            two-letter country (C)
  --state NAME            state or province (ST)
  --locality NAME         locality (L)
Key:
  --key ec|rsa            key type (default ec: ECDSA P-256)
  --rsa-bits N            RSA size: 2048 (default), 3072 or 4096; implies --key rsa
Validity:
  --days N                days of validity from now
  --not-before DATE       ISO 8601 start (default: 5 minutes ago)
  --not-after DATE        ISO 8601 end (overrides --days)
Output:
  --out-dir DIR           where files go (default .); also --output-dir
  --name BASE             file base name: BASE.key, BASE.crt, BASE.chain.pem, BASE.p12
  --p12                   also write a PKCS#12 keystore BASE.p12 (needs a password)
  --password PW           keystore password (implies --p12)
  --password-file FILE    read the keystore password from the first line of FILE
  --alias NAME            keystore alias (friendlyName); default BASE
  --force                 overwrite existing files
  -h, --help              this help`;

const ISSUER_HELP = `
Issuer:
  --ca-cert FILE          issuing CA certificate (default DIR/ca.crt); also --ca-crt.
                          Further certificates in FILE, or FILE's sibling BASE.chain.pem,
                          complete the chain written to the chain file.
  --ca-key FILE           issuing CA private key (default DIR/ca.key): PKCS#8, RSA or EC PEM
  --ca-key-password PW    password of an encrypted CA key`;

interface Subcommand {
  summary: string;
  usage: string;
  options: Options;
  run(values: Values, io: CommandIo): Promise<void>;
}

const SUBCOMMANDS: Record<string, Subcommand> = {
  ca: {
    summary: 'self-signed root CA (CA:true, keyCertSign, cRLSign)',
    usage: `Usage: certgate certs ca [options]

Makes a self-signed root CA: X.509 v3, basicConstraints critical CA:true, keyUsage critical
keyCertSign + cRLSign, subject and authority key identifiers. Defaults: CN "certgate Root CA",
3650 days, files ca.key, ca.crt, ca.chain.pem.

  --path-len N            basicConstraints pathLenConstraint (default: none)
${COMMON_HELP}`,
    options: { ...SUBJECT, ...KEY, ...VALIDITY, ...OUTPUT, ...HELP, 'path-len': { type: 'string' } },
    async run(v, io) {
      const out = outputOf(v, io, 'ca');
      await prepareOutput(out);
      const creds = await createCa({ ...subjectOf(v), ...keyOf(v), ...validityOf(v), pathLen: intOf(v, 'path-len', 0) });
      await writeCredentials(out, creds, io, 'CA certificate');
    },
  },
  intermediate: {
    summary: 'intermediate CA signed by a CA',
    usage: `Usage: certgate certs intermediate [options]

Makes a CA certificate signed by --ca-cert/--ca-key, with the extensions of a root.
Defaults: CN "certgate Intermediate CA", 1825 days, files intermediate.key, .crt, .chain.pem.

  --path-len N            basicConstraints pathLenConstraint (default: none)
${ISSUER_HELP}
${COMMON_HELP}`,
    options: { ...SUBJECT, ...KEY, ...VALIDITY, ...OUTPUT, ...ISSUER, ...HELP, 'path-len': { type: 'string' } },
    async run(v, io) {
      const out = outputOf(v, io, 'intermediate');
      const pathLen = intOf(v, 'path-len', 0);
      const issuer = await issuerOf(v, io, out.dir, { issuingCa: { pathLen } });
      await prepareOutput(out);
      const creds = await createIntermediate({ issuer, ...subjectOf(v), ...keyOf(v), ...validityOf(v), pathLen });
      await writeCredentials(out, creds, io, 'intermediate CA certificate', issuer);
    },
  },
  server: {
    summary: 'TLS server certificate (serverAuth, DNS/IP SANs)',
    usage: `Usage: certgate certs server [options]

Makes a TLS server certificate: CA:false, keyUsage digitalSignature (+ keyEncipherment for RSA),
extendedKeyUsage serverAuth, subjectAltName from --dns and --ip. Without --cn, --dns or --ip it
is for localhost (DNS:localhost, IP:127.0.0.1, IP:::1). Defaults: 365 days, files server.*.

  --dns NAME              DNS SAN; repeat for more
  --ip ADDRESS            IP SAN (IPv4 or IPv6); repeat for more
${ISSUER_HELP}
${COMMON_HELP}`,
    options: {
      ...SUBJECT,
      ...KEY,
      ...VALIDITY,
      ...OUTPUT,
      ...ISSUER,
      ...HELP,
      dns: { type: 'string', multiple: true },
      ip: { type: 'string', multiple: true },
    },
    async run(v, io) {
      const out = outputOf(v, io, 'server');
      const issuer = await issuerOf(v, io, out.dir);
      await prepareOutput(out);
      let dns = v.dns as string[] | undefined;
      let ip = v.ip as string[] | undefined;
      if (!v.cn && !dns && !ip) {
        dns = ['localhost'];
        ip = ['127.0.0.1', '::1'];
      }
      const creds = await createServer({ issuer, ...subjectOf(v), ...keyOf(v), ...validityOf(v), dns, ip });
      await writeCredentials(out, creds, io, 'server certificate', issuer);
    },
  },
  device: {
    summary: 'device (MQTT client) certificate (clientAuth, optional SAN URI)',
    usage: `Usage: certgate certs device (--cn NAME | --device-id ID [--uri-domain DOMAIN]) [options]

Makes a device certificate: CA:false, keyUsage digitalSignature (+ keyEncipherment for RSA),
extendedKeyUsage clientAuth. With --device-id and --uri-domain it carries the SAN URI
spiffe://DOMAIN/device/ID (amqtt's device_creds). The CN defaults to the device id; files are
named after the device id (or CN) unless --name is given. Defaults: 365 days.

  --device-id ID          device id: the CN unless --cn is given, and the SAN URI's last segment
  --uri-domain DOMAIN     SAN URI domain; also --uri (amqtt's spelling)
  --dns NAME              extra DNS SAN; repeat for more
  --ip ADDRESS            extra IP SAN; repeat for more
${ISSUER_HELP}
${COMMON_HELP}`,
    options: {
      ...SUBJECT,
      ...KEY,
      ...VALIDITY,
      ...OUTPUT,
      ...ISSUER,
      ...HELP,
      'device-id': { type: 'string' },
      'uri-domain': { type: 'string' },
      uri: { type: 'string' },
      dns: { type: 'string', multiple: true },
      ip: { type: 'string', multiple: true },
    },
    async run(v, io) {
      const deviceId = str(v, 'device-id');
      const uriDomain = str(v, 'uri-domain') ?? str(v, 'uri');
      const cn = str(v, 'cn') ?? deviceId;
      if (!cn) throw new UsageError('give --cn or --device-id');
      if (uriDomain && !deviceId) throw new UsageError('--uri-domain needs --device-id');
      const base = str(v, 'name') ?? cn;
      if (!str(v, 'name') && !isFileBase(base)) {
        throw new UsageError(`"${base}" cannot be a file name; give --name`);
      }
      const out = outputOf(v, io, base);
      const issuer = await issuerOf(v, io, out.dir);
      await prepareOutput(out);
      const extraSan: SanEntry[] = [
        ...((v.dns as string[] | undefined) ?? []).map((value): SanEntry => ({ type: 'dns', value })),
        ...((v.ip as string[] | undefined) ?? []).map((value): SanEntry => ({ type: 'ip', value })),
      ];
      const creds = await createDevice({
        issuer,
        ...subjectOf(v),
        ...keyOf(v),
        ...validityOf(v),
        cn,
        deviceId,
        uriDomain,
        extraSan,
      });
      await writeCredentials(out, creds, io, 'device certificate', issuer);
    },
  },
  pop: {
    summary: 'sign a proof-of-possession verification code with a CA key',
    usage: `Usage: certgate certs pop --ca-key FILE --code CODE [--ca-key-password PW] [--ca-cert FILE]

Prints the base64 SHA-256 signature of CODE made with the CA key: the
proofOfPossessionSignedVerificationCode for
POST /tenant/tenants/{tenantId}/trusted-certificates-pop/{fingerprint}/pop. The same as
  printf %s CODE | openssl dgst -sha256 -sign ca.key | openssl base64 -A

  --ca-key FILE           CA private key (PKCS#8, RSA or EC PEM)
  --code CODE             proofOfPossessionUnsignedVerificationCode from the verification-code call
  --ca-key-password PW    password of an encrypted CA key
  --ca-cert FILE          optional: refuse when the key is not this certificate's
  -h, --help              this help`,
    options: {
      'ca-key': { type: 'string' },
      'ca-key-password': { type: 'string' },
      'ca-cert': { type: 'string' },
      'ca-crt': { type: 'string' },
      code: { type: 'string' },
      ...HELP,
    },
    async run(v, io) {
      const keyPath = str(v, 'ca-key');
      const code = str(v, 'code');
      if (!keyPath) throw new UsageError('give --ca-key');
      if (code === undefined || code === '') throw new UsageError('give --code');
      const keyPem = await readFileOr(path.resolve(io.cwd, keyPath), 'CA key');
      const password = str(v, 'ca-key-password');
      const certPath = str(v, 'ca-cert') ?? str(v, 'ca-crt');
      if (certPath) {
        const certPem = await readFileOr(path.resolve(io.cwd, certPath), 'CA certificate');
        const issuer = loadIssuer({ certPem, keyPem, keyPassword: password });
        if (!keyMatchesCertificate(issuer.privateKey, issuer.certDer)) {
          throw new CertsError('KEY_MISMATCH', `CA key ${keyPath} does not match the CA certificate ${certPath}`);
        }
      }
      let signature: string;
      try {
        signature = signPopCode(keyPem, code, password);
      } catch (err) {
        if (err instanceof CertsError && err.code === 'KEY_ENCRYPTED') {
          throw new CertsError('KEY_ENCRYPTED', `CA key ${keyPath} is encrypted; give --ca-key-password`);
        }
        throw err;
      }
      io.stdout(`${signature}\n`);
    },
  },
};

const TOP_USAGE = `Usage: certgate certs <command> [options]

Commands:
${Object.entries(SUBCOMMANDS)
  .map(([name, c]) => `  ${name.padEnd(14)}${c.summary}`)
  .join('\n')}

Run "certgate certs <command> --help" for a command's options.`;

/** Entry point from src/cli/main.ts. Returns the process exit status. */
export async function runCertsCommand(argv: readonly string[], io: CommandIo = defaultIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout)(`${TOP_USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  const sub = SUBCOMMANDS[name];
  if (!sub) {
    io.stderr(`certgate certs: unknown command "${name}" (one of ${Object.keys(SUBCOMMANDS).join(', ')})\n`);
    return 2;
  }
  try {
    const { values, positionals } = parseArgs({ args: [...rest], options: sub.options, strict: true, allowPositionals: true });
    if (values.help) {
      io.stdout(`${sub.usage}\n`);
      return 0;
    }
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    await sub.run(values as Values, io);
    return 0;
  } catch (err) {
    if (err instanceof UsageError || err instanceof CertsError || isParseArgsError(err)) {
      io.stderr(`certgate certs ${name}: ${oneLine((err as Error).message)}\n`);
      return 2;
    }
    io.stderr(`certgate certs ${name}: unexpected error: ${oneLine(String((err as Error)?.message ?? err))}\n`);
    return 1;
  }
}

// ---------------------------------------------------------------------------------------------
// Option readers

function str(v: Values, key: string): string | undefined {
  const x = v[key];
  return typeof x === 'string' ? x : undefined;
}

function intOf(v: Values, key: string, min: number): number | undefined {
  const s = str(v, key);
  if (s === undefined) return undefined;
  if (!/^\d+$/.test(s) || Number(s) < min) throw new UsageError(`--${key} must be a whole number >= ${min}, not "${s}"`);
  return Number(s);
}

function subjectOf(v: Values): SubjectFields {
  return {
    cn: str(v, 'cn'),
    org: str(v, 'org') ?? str(v, 'org-name'),
    orgUnit: str(v, 'ou'),
    country: str(v, 'country'),
    state: str(v, 'state'),
    locality: str(v, 'locality'),
  };
}

function keyOf(v: Values): KeySpec {
  const key = str(v, 'key');
  const bits = str(v, 'rsa-bits');
  if (key !== undefined && key !== 'ec' && key !== 'rsa') throw new UsageError(`--key must be ec or rsa, not "${key}"`);
  if (bits !== undefined) {
    if (key === 'ec') throw new UsageError('--rsa-bits goes with --key rsa');
    if (!['2048', '3072', '4096'].includes(bits)) throw new UsageError(`--rsa-bits must be 2048, 3072 or 4096, not "${bits}"`);
    return { key: 'rsa', rsaBits: Number(bits) };
  }
  return { key: key ?? 'ec' };
}

function validityOf(v: Values): ValidityOptions {
  const days = intOf(v, 'days', 1);
  const date = (key: string) => {
    const s = str(v, key);
    if (s === undefined) return undefined;
    const d = new Date(s);
    if (!/^\d{4}-\d{2}-\d{2}/.test(s) || Number.isNaN(d.getTime())) {
      throw new UsageError(`--${key} must be an ISO 8601 date such as 2030-01-31 or 2030-01-31T12:00:00Z, not "${s}"`);
    }
    return d;
  };
  return { days, notBefore: date('not-before'), notAfter: date('not-after') };
}

/** A base name that is one path segment and not hidden or special. */
function isFileBase(base: string): boolean {
  return /^[A-Za-z0-9@+_][A-Za-z0-9@+_.=-]*$/.test(base) && base.length <= 200;
}

// ---------------------------------------------------------------------------------------------
// Files

interface Output {
  dir: string;
  base: string;
  /** Set by prepareOutput once the password is known. */
  p12?: { password: string; alias: string };
  force: boolean;
  files: string[];
  v: Values;
  cwd: string;
}

function outputOf(v: Values, io: CommandIo, defaultBase: string): Output {
  const dir = path.resolve(io.cwd, str(v, 'out-dir') ?? str(v, 'output-dir') ?? '.');
  const base = str(v, 'name') ?? defaultBase;
  if (!isFileBase(base)) throw new UsageError(`--name "${base}" is not a plain file name`);
  const wantsP12 = v.p12 === true || str(v, 'password') !== undefined || str(v, 'password-file') !== undefined;
  const files = [`${base}.key`, `${base}.crt`, `${base}.chain.pem`, ...(wantsP12 ? [`${base}.p12`] : [])];
  return { dir, base, force: v.force === true, files, v, cwd: io.cwd };
}

/**
 * Reads the keystore password and checks every target before anything is written, so a refusal
 * leaves nothing half-written.
 */
async function prepareOutput(out: Output): Promise<void> {
  const v = out.v;
  if (out.files.includes(`${out.base}.p12`)) {
    let password = str(v, 'password');
    const file = str(v, 'password-file');
    if (password !== undefined && file !== undefined) throw new UsageError('give --password or --password-file, not both');
    if (file !== undefined) {
      const text = await readFileOr(path.resolve(out.cwd, file), 'password file');
      password = text.split(/\r?\n/)[0] ?? '';
    }
    if (!password) throw new UsageError('--p12 needs --password or --password-file');
    out.p12 = { password, alias: str(v, 'alias') ?? out.base };
  }
  if (out.force) return;
  for (const f of out.files) {
    if (await exists(path.join(out.dir, f))) {
      throw new CertsError('FILE_EXISTS', `${path.join(out.dir, f)} already exists; use --force to overwrite`);
    }
  }
}

async function writeCredentials(
  out: Output,
  creds: Credentials,
  io: CommandIo,
  what: string,
  issuer?: LoadedIssuer,
): Promise<void> {
  await fs.mkdir(out.dir, { recursive: true });
  const written: string[] = [];
  const write = async (file: string, data: string | Uint8Array, mode: number) => {
    const target = path.join(out.dir, file);
    // Replace rather than truncate, so a key never sits in a file with the old, wider mode.
    if (out.force) await fs.rm(target, { force: true });
    await fs.writeFile(target, data, { mode, flag: 'wx' });
    written.push(target);
  };
  await write(`${out.base}.key`, creds.keyPem, 0o600);
  await write(`${out.base}.crt`, creds.certPem, 0o644);
  await write(`${out.base}.chain.pem`, creds.chainPem, 0o644);
  if (out.p12) {
    const p12 = await toPkcs12(creds, { password: out.p12.password, friendlyName: out.p12.alias });
    await write(`${out.base}.p12`, p12, 0o600);
  }

  const rel = (p: string) => path.relative(io.cwd, p) || p;
  const lines = [
    `created ${what} ${creds.subject}`,
    `  issuer       ${creds.issuer}`,
    `  serial       ${creds.serialNumberHex}`,
    `  sha1         ${creds.fingerprintSha1}`,
    `  valid        ${isoSeconds(creds.notBefore)} to ${isoSeconds(creds.notAfter)}`,
    ...written.map((f, i) => `  ${i === 0 ? 'files' : '     '}        ${rel(f)}`),
  ];
  if (out.p12) lines.push(`  p12 alias    ${out.p12.alias}`);
  io.stdout(`${lines.join('\n')}\n`);
  const issuerNotAfter = issuer?.facts.notAfter;
  if (issuerNotAfter && creds.notAfter.getTime() > issuerNotAfter.getTime()) {
    io.stderr(`note: the certificate outlives its issuer, which expires ${isoSeconds(issuerNotAfter)}\n`);
  }
}

/**
 * Reads --ca-cert/--ca-key (default DIR/ca.crt and DIR/ca.key) and refuses an issuer that could
 * not sign a valid certificate. When the certificate file holds only the issuer and the issuer is
 * not a root, BASE.chain.pem next to it supplies the rest of the chain.
 */
async function issuerOf(v: Values, io: CommandIo, dir: string, check: IssuerCheck = {}): Promise<LoadedIssuer> {
  const certPath = path.resolve(io.cwd, str(v, 'ca-cert') ?? str(v, 'ca-crt') ?? path.join(dir, 'ca.crt'));
  const keyPath = path.resolve(io.cwd, str(v, 'ca-key') ?? path.join(dir, 'ca.key'));
  const certPem = await readFileOr(certPath, 'CA certificate', '--ca-cert');
  const keyPem = await readFileOr(keyPath, 'CA key', '--ca-key');
  let issuer: LoadedIssuer;
  try {
    issuer = loadIssuer({ certPem, keyPem, keyPassword: str(v, 'ca-key-password') });
  } catch (err) {
    if (err instanceof CertsError && err.code === 'KEY_ENCRYPTED') {
      throw new CertsError('KEY_ENCRYPTED', `CA key ${keyPath} is encrypted; give --ca-key-password`);
    }
    throw err;
  }
  if (issuer.chainDer.length === 1 && !issuer.facts.selfIssued) {
    const sibling = certPath.replace(/(\.chain)?\.(crt|pem|cer)$/i, '') + '.chain.pem';
    if (sibling !== certPath && (await exists(sibling))) {
      issuer = loadIssuer({ certPem, keyPem, keyPassword: str(v, 'ca-key-password'), chainPem: await fs.readFile(sibling, 'utf8') });
    }
  }
  try {
    assertUsableIssuer(issuer, check);
  } catch (err) {
    if (err instanceof CertsError && err.code === 'KEY_MISMATCH') {
      throw new CertsError('KEY_MISMATCH', `CA key ${keyPath} does not match the CA certificate ${certPath}`);
    }
    throw err;
  }
  return issuer;
}

async function readFileOr(file: string, what: string, option?: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CertsError('FILE_NOT_FOUND', `${what} not found: ${file}${option ? ` (give ${option})` : ''}`);
    }
    throw new CertsError('FILE_NOT_FOUND', `cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return true;
  } catch {
    return false;
  }
}

function isParseArgsError(err: unknown): boolean {
  const code = (err as { code?: string })?.code ?? '';
  return code.startsWith('ERR_PARSE_ARGS') || code === 'ERR_INVALID_ARG_VALUE';
}

function oneLine(s: string): string {
  // parseArgs appends advice about "--" to unknown options; --help is the better advice here.
  s = s.replace(/\. To specify a positional argument starting with a '-'.*$/s, ' (see --help)');
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

function isoSeconds(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
