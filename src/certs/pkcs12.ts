/**
 * PKCS#12 keystores (RFC 7292) for clients that want one file (MQTT.fx, Java, .NET), laid out
 * as `openssl pkcs12 -export` lays them out: the key in a PKCS8ShroudedKeyBag inside a plain
 * Data safe, the certificates in a password-encrypted safe, and a password MAC over the whole.
 *
 * Algorithms are OpenSSL 3's defaults rather than the legacy RC2/3DES ones, which OpenSSL 3
 * no longer reads without its legacy provider: PBES2 (RFC 8018) with PBKDF2-HMAC-SHA256 and
 * AES-256-CBC for key and certificates, and an HMAC-SHA256 MAC keyed by the PKCS#12 KDF
 * (RFC 7292 B.2). Java reads these since 8u301/11.0.12.
 */
import { createHash, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { CertsError } from './certs-errors.js';
import { toArrayBuffer } from './x509.js';

const crypto = new pkijs.CryptoEngine({ name: 'node-webcrypto', crypto: globalThis.crypto });

const OID_FRIENDLY_NAME = '1.2.840.113549.1.9.20';
const OID_LOCAL_KEY_ID = '1.2.840.113549.1.9.21';
const OID_PKCS8_SHROUDED_KEY_BAG = '1.2.840.113549.1.12.10.1.2';
const OID_CERT_BAG = '1.2.840.113549.1.12.10.1.3';
const OID_X509_CERTIFICATE = '1.2.840.113549.1.9.22.1';

export interface Pkcs12Options {
  password: string;
  /** The alias keytool and MQTT.fx show ("Client KeyPair Alias"). Default: the file base name or `certgate`. */
  friendlyName?: string;
  /** PBKDF2 and MAC iterations; default 10000. */
  iterations?: number;
}

export interface Pkcs12Input {
  /** The certificate of `privateKey`. */
  certDer: Uint8Array;
  /** More certificates for the keystore's chain: leaf-first order, the leaf itself may be included. */
  chainDer?: readonly Uint8Array[];
  privateKey: KeyObject;
}

export async function toPkcs12(input: Pkcs12Input, opts: Pkcs12Options): Promise<Uint8Array> {
  if (!opts.password) throw new CertsError('INVALID_OPTION', 'a PKCS#12 keystore needs a password');
  const iterations = opts.iterations ?? 10_000;
  const password = toArrayBuffer(new TextEncoder().encode(opts.password));
  const friendlyName = opts.friendlyName ?? 'certgate';

  // localKeyId pairs the key with its certificate; keytool needs it to show a PrivateKeyEntry.
  // OpenSSL uses the SHA-1 of the certificate, so does this.
  const localKeyId = new Uint8Array(createHash('sha1').update(input.certDer).digest());
  const entryAttributes = () => [
    new pkijs.Attribute({ type: OID_FRIENDLY_NAME, values: [new asn1js.BmpString({ value: friendlyName })] }),
    new pkijs.Attribute({ type: OID_LOCAL_KEY_ID, values: [new asn1js.OctetString({ valueHex: toArrayBuffer(localKeyId) })] }),
  ];

  const pbes2 = {
    password,
    contentEncryptionAlgorithm: { name: 'AES-CBC', length: 256 },
    hmacHashAlgorithm: 'SHA-256',
    iterationCount: iterations,
  };

  const pkcs8 = input.privateKey.export({ type: 'pkcs8', format: 'der' });
  const keyBag = new pkijs.PKCS8ShroudedKeyBag({ parsedValue: pkijs.PrivateKeyInfo.fromBER(toArrayBuffer(pkcs8)) });
  await keyBag.makeInternalValues(pbes2, crypto);

  const certs: Uint8Array[] = [input.certDer];
  for (const der of input.chainDer ?? []) {
    if (!certs.some((c) => Buffer.from(c).equals(Buffer.from(der)))) certs.push(der);
  }
  const certBags = certs.map(
    (der, i) =>
      new pkijs.SafeBag({
        bagId: OID_CERT_BAG,
        // certValue given as the original DER so the certificate is carried byte for byte.
        bagValue: new pkijs.CertBag({
          certId: OID_X509_CERTIFICATE,
          certValue: new asn1js.OctetString({ valueHex: toArrayBuffer(der) }),
        }),
        ...(i === 0 ? { bagAttributes: entryAttributes() } : {}),
      }),
  );

  const pfx = new pkijs.PFX({
    parsedValue: {
      integrityMode: 0, // password integrity (RFC 7292 4, MacData)
      authenticatedSafe: new pkijs.AuthenticatedSafe({
        parsedValue: {
          safeContents: [
            {
              privacyMode: 1, // password privacy: EncryptedData
              value: new pkijs.SafeContents({ safeBags: certBags }),
            },
            {
              privacyMode: 0, // the key bag is encrypted itself
              value: new pkijs.SafeContents({
                safeBags: [
                  new pkijs.SafeBag({ bagId: OID_PKCS8_SHROUDED_KEY_BAG, bagValue: keyBag, bagAttributes: entryAttributes() }),
                ],
              }),
            },
          ],
        },
      }),
    },
  });
  const authSafe = pfx.parsedValue!.authenticatedSafe!;
  await authSafe.makeInternalValues({ safeContents: [pbes2, {}] }, crypto);
  await pfx.makeInternalValues(
    { password, iterations, pbkdf2HashAlgorithm: 'SHA-256', hmacHashAlgorithm: 'SHA-256' },
    crypto,
  );
  return new Uint8Array(pfx.toSchema().toBER(false));
}
