/**
 * Fast device certificates for the verifier benchmark: one template leaf is made with the certs
 * module, then each new leaf is the template's TBSCertificate with a fresh serial and another
 * device name of the same length written in place, signed again by the CA (one ECDSA signature,
 * ~30 µs). Every leaf is a distinct, valid certificate under the CA.
 */
import crypto, { type KeyObject } from 'node:crypto';
import { createDevice, generateKeyPair, type Credentials } from '../src/certs/certs-service.js';
import { childrenOf, readWhole } from '../src/pki/der.js';

export interface LeafMinter {
  /** PEM of a new leaf for `deviceName`, which must have the minter's name length. */
  mint(deviceName: string): string;
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(value.length), value]);
}

export function pem(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN CERTIFICATE-----\n${b64.match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
}

export async function createLeafMinter(ca: Credentials, nameLength: number): Promise<LeafMinter> {
  const placeholder = 'Z'.repeat(nameLength);
  const keyPair = await generateKeyPair();
  const template = await createDevice({ issuer: ca, cn: placeholder, keyPair });
  const der = Buffer.from(template.certDer);
  const cert = readWhole(der);
  const [tbsTlv, sigAlgTlv] = childrenOf(cert);
  const tbs = der.subarray(tbsTlv!.start, tbsTlv!.end);
  const sigAlg = der.subarray(sigAlgTlv!.start, sigAlgTlv!.end);
  const fields = childrenOf(tbsTlv!);
  const serial = fields[1]!;
  const serialAt = serial.valueStart - tbsTlv!.start;
  const serialLength = serial.end - serial.valueStart;
  const nameAt = tbs.indexOf(placeholder, 0, 'latin1');
  if (nameAt < 0 || tbs.indexOf(placeholder, nameAt + 1, 'latin1') >= 0) throw new Error('template name not found exactly once');
  const key: KeyObject = ca.privateKey;

  return {
    mint(deviceName: string): string {
      if (deviceName.length !== nameLength) throw new Error(`device name must have ${nameLength} characters`);
      const t = Buffer.from(tbs);
      const s = crypto.randomBytes(serialLength);
      s[0] = (s[0]! & 0x7f) || 0x01;
      s.copy(t, serialAt);
      t.write(deviceName, nameAt, 'latin1');
      const signature = crypto.sign('sha256', t, { key, dsaEncoding: 'der' });
      const body = Buffer.concat([t, sigAlg, tlv(0x03, Buffer.concat([Buffer.from([0]), signature]))]);
      return pem(tlv(0x30, body));
    },
  };
}
