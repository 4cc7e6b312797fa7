/**
 * The chain a caller presented, as the verifier takes it: one certificate per entry, leaf first.
 * Brokers that terminate TLS themselves send one string: EMQX renders `${cert_pem}` as the
 * base64 of the leaf's DER on one line (emqx_auth_utils:render_var), VerneMQ sends
 * `client_cert` the same way (vmq_webhooks_plugin:encode_payload); others send a PEM bundle.
 */
import { splitPemBundle } from '../pki/certificate.js';

export function presentedChain(field: string | readonly string[]): string[] {
  if (typeof field !== 'string') return [...field];
  const text = field.trim();
  // No client certificate: EMQX renders an absent `${cert_pem}` as "" (denied: none presented).
  if (text === '') return [];
  if (!text.includes('-----BEGIN')) return [text];
  const blocks = splitPemBundle(text);
  // Armour that is not a certificate is left to the parser, which says what it found.
  return blocks.length > 0 ? blocks : [text];
}
