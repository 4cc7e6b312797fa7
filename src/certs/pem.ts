/** PEM armour (RFC 7468): base64 at 64 columns between `-----BEGIN <label>-----` lines. */

export function toPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Every block with `label` in `text`, in order, as DER. Text outside the blocks is ignored. */
export function pemBlocks(text: string, label: string): Uint8Array[] {
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, 'g');
  const out: Uint8Array[] = [];
  for (const m of text.matchAll(re)) {
    const body = (m[1] ?? '').replace(/\s+/g, '');
    out.push(new Uint8Array(Buffer.from(body, 'base64')));
  }
  return out;
}

/** Certificates of a PEM bundle, in file order. */
export function certificatesFromPem(text: string): Uint8Array[] {
  return pemBlocks(text, 'CERTIFICATE');
}

export function certificatesToPem(ders: readonly Uint8Array[]): string {
  return ders.map((d) => toPem('CERTIFICATE', d)).join('');
}
