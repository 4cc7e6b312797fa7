/**
 * The certificates a TLS client presented, exactly as it sent them.
 *
 * Node offers two views of the peer's chain, and only one of them is the client's:
 * - `getPeerCertificate(true)` links certificates by issuer name (OpenSSL `X509_check_issued`),
 *   stops early when the issuer it found was the last one left to search (so intermediates sent
 *   in reverse order are lost), and then continues from the server's own trust store.
 * - `getPeerX509Certificate()` wraps `SSL_get_peer_certificate` and sets `issuerCertificate` to
 *   each next entry of `SSL_get_peer_cert_chain`: on the server that is the client's Certificate
 *   message minus the leaf, in the order sent, whatever the issuer names say, and nothing from
 *   any trust store. With `requestCert: true, rejectUnauthorized: false` and no `ca` configured,
 *   OpenSSL keeps all of it.
 * The second is what the verifier must see (it builds the path itself, through the presented intermediates).
 *
 * One caveat: a resumed TLS session keeps the leaf but not the intermediates, so the listener
 * turns session resumption off (SSL_OP_NO_TICKET without a session cache).
 */
import { hash, type X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';

/** The leaf and the certificates the client sent after it, in order, each once. */
export interface PeerChain {
  /** DER, leaf first. */
  ders: Buffer[];
  /** Serials of `ders`, lowercase hex without leading zeros. */
  serials: string[];
  leaf: X509Certificate;
}

/** Hard stop for a client that sends an absurd number of certificates; the verifier judges length. */
const MAX_CERTIFICATES = 32;

export function peerChain(socket: TLSSocket): PeerChain | undefined {
  const leaf = socket.getPeerX509Certificate();
  if (!leaf) return undefined;
  const ders: Buffer[] = [];
  const serials: string[] = [];
  let steps = 0;
  for (let c: X509Certificate | undefined = leaf; c && steps < MAX_CERTIFICATES; c = c.issuerCertificate, steps++) {
    const der = c.raw;
    // Clients may repeat the leaf in the chain file (mosquitto_pub --cert chain.pem does).
    if (ders.some((d) => d.equals(der))) continue;
    ders.push(der);
    serials.push(normalizeSerial(c.serialNumber));
  }
  return { ders, serials, leaf };
}

/** Lowercase hex SHA-1 of a DER certificate: a trusted certificate's `fingerprint`. */
export function sha1Fingerprint(der: Buffer): string {
  return hash('sha1', der, 'hex');
}

/** A serial as revocation compares them: lowercase hex without leading zeros. */
export function normalizeSerial(hex: string): string {
  const s = hex.replace(/[:\s]/g, '').toLowerCase().replace(/^0+/, '');
  return s === '' ? '0' : s;
}
