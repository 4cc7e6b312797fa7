/**
 * Certificates made with the openssl CLI the way the seed guides make them (Cumulocity /
 * MindConnect "Connecting devices using Trusted Certificates"): a CA from `caConfig.cnf` with
 * `-extensions v3_ca`, devices signed by `openssl ca -extensions v3_signed`, and the odd ones
 * users produce by accident (version 1 from `openssl x509 -req`, SHA-1, RSA-1024).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function openssl(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await run('openssl', args, { cwd });
  return stdout;
}

/** A temporary directory removed when the test ends. */
export async function tempDir(t: TestContext, prefix = 'certgate-openssl-'): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The guide's `caConfig.cnf`, with `dir` pointing at the CA directory. */
export function caConfig(dir: string): string {
  return `[ ca ]
default_ca = CA_default
[ CA_default ]
dir               = ${dir}
certs             = $dir
crl_dir           = $dir/crl
new_certs_dir     = $dir/deviceCertificates
database          = $dir/database.txt
serial            = $dir/serial
private_key       = $dir/caKey.pem
certificate       = $dir/caCert.pem
default_md        = sha256
default_days      = 375
preserve          = no
policy            = signing_policy
crl               = $crl_dir/caCrl.pem
crlnumber         = $crl_dir/crlnumber
crl_extensions    = crl_ext
default_crl_days  = 30
[ req ]
default_bits        = 4096
distinguished_name  = req_distinguished_name
string_mask         = utf8only
default_md          = sha256
x509_extensions     = v3_ca
[ req_distinguished_name ]
countryName                     = Country Name (2 letter code)
stateOrProvinceName             = State or Province Name
localityName                    = Locality Name
organizationName                = Organization Name
organizationalUnitName          = Organizational Unit Name
commonName                      = Common Name
emailAddress                    = Email Address
[ v3_ca ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
basicConstraints = critical, CA:true, pathlen:10
keyUsage = digitalSignature, cRLSign, keyCertSign
[ v3_signed ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
basicConstraints = critical, CA:false
keyUsage = nonRepudiation, digitalSignature, keyEncipherment
[ crl_ext ]
authorityKeyIdentifier=keyid:always
[ signing_policy ]
countryName             = optional
stateOrProvinceName     = optional
organizationName        = optional
organizationalUnitName  = optional
commonName              = supplied
emailAddress            = optional
`;
}

export interface GuideCa {
  dir: string;
  /** caCert.pem as openssl wrote it. */
  certPem: string;
  password: string;
}

/**
 * The guide's "Creating a self-signed CA certificate", steps 1-8: directory layout, config,
 * `openssl genrsa -aes256 ... 4096` and `openssl req -config caConfig.cnf -key caKey.pem -new -x509
 * -days 7300 -sha256 -extensions v3_ca -out caCert.pem` (the subject given on the command line
 * instead of at the prompt).
 */
export async function guideCa(t: TestContext, cn = 'certgate guide CA'): Promise<GuideCa> {
  const dir = await tempDir(t, 'certgate-guide-ca-');
  const password = 'guide-ca-password';
  await fs.writeFile(path.join(dir, 'caConfig.cnf'), caConfig(dir));
  await fs.writeFile(path.join(dir, 'database.txt'), '');
  await fs.writeFile(path.join(dir, 'serial'), '1000\n');
  await fs.mkdir(path.join(dir, 'deviceCertificates'));
  await fs.mkdir(path.join(dir, 'crl'));
  await openssl(dir, 'genrsa', '-aes256', '-passout', `pass:${password}`, '-out', 'caKey.pem', '4096');
  await openssl(
    dir,
    'req', '-config', 'caConfig.cnf', '-key', 'caKey.pem', '-passin', `pass:${password}`,
    '-new', '-x509', '-days', '7300', '-sha256', '-extensions', 'v3_ca', '-out', 'caCert.pem',
    '-subj', `/C=DE/O=certgate tests/CN=${cn}`,
  );
  return { dir, certPem: await fs.readFile(path.join(dir, 'caCert.pem'), 'utf8'), password };
}

/**
 * The guide's "Creating a device certificate signed by CA": key, CSR with `caConfig.cnf`, then
 * `openssl ca -config caConfig.cnf -extensions v3_signed -days 365 -notext -md sha256`.
 * (A 2048-bit device key instead of the guide's 4096 keeps the tests quick; nothing else differs.)
 */
export async function guideDevice(ca: GuideCa, cn: string): Promise<{ certPem: string; keyPath: string }> {
  const base = path.join('deviceCertificates', cn.replace(/[^A-Za-z0-9_-]/g, '_'));
  await openssl(ca.dir, 'genrsa', '-out', `${base}Key.pem`, '2048');
  await openssl(ca.dir, 'req', '-config', 'caConfig.cnf', '-new', '-sha256', '-key', `${base}Key.pem`, '-out', `${base}Csr.pem`, '-subj', `/CN=${cn}`);
  await openssl(
    ca.dir,
    'ca', '-batch', '-config', 'caConfig.cnf', '-passin', `pass:${ca.password}`, '-extensions', 'v3_signed',
    '-days', '365', '-notext', '-md', 'sha256', '-in', `${base}Csr.pem`, '-out', `${base}Cert.pem`,
  );
  return { certPem: await fs.readFile(path.join(ca.dir, `${base}Cert.pem`), 'utf8'), keyPath: path.join(ca.dir, `${base}Key.pem`) };
}

/** "Remove new line symbols (\n)": the PEM as users paste it into the JSON body. */
export function withoutNewlines(pem: string): string {
  return pem.replace(/\r?\n/g, '');
}

/** Self-signed CA with openssl's own choice of extensions plus `-addext`, of any RSA size and digest. */
export async function opensslSelfSignedCa(
  t: TestContext,
  opts: { cn: string; rsaBits?: number; digest?: string; addext?: string[] },
): Promise<string> {
  const dir = await tempDir(t);
  const args = [
    'req', '-x509', '-newkey', `rsa:${opts.rsaBits ?? 2048}`, '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem',
    '-days', '30', `-${opts.digest ?? 'sha256'}`, '-subj', `/CN=${opts.cn}`,
  ];
  for (const e of opts.addext ?? ['basicConstraints=critical,CA:true', 'keyUsage=critical,keyCertSign,cRLSign']) {
    args.push('-addext', e);
  }
  await openssl(dir, ...args);
  return fs.readFile(path.join(dir, 'cert.pem'), 'utf8');
}

/** An X.509 version 1 certificate, as `openssl x509 -req -signkey` makes it without `-extfile`. */
export async function opensslV1Certificate(t: TestContext, cn: string): Promise<string> {
  const dir = await tempDir(t);
  await openssl(dir, 'req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'key.pem', '-out', 'req.csr', '-subj', `/CN=${cn}`);
  await openssl(dir, 'x509', '-req', '-in', 'req.csr', '-signkey', 'key.pem', '-days', '30', '-out', 'cert.pem');
  return fs.readFile(path.join(dir, 'cert.pem'), 'utf8');
}
