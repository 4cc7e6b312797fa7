/**
 * What the HTTP fuzz suite sends: mutations of a valid request for one write route. Each case
 * changes one thing (a field's value, the whole body, the bytes of a PEM, a path parameter, the
 * query, the media type, the credentials) so a failure names what broke the rule.
 */
import fc from 'fast-check';

/** Strings that have broken services like this one: NUL and control characters, lone surrogates, huge, dates, injections. */
export const HOSTILE_STRINGS = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\u0001\u0002\u001f\u007f',
  '\r\n\r\nHTTP/1.1 200 OK',
  '\ud800',
  '\udfff\ud800',
  '\u202eevil',
  '\ufeff',
  '%00',
  '%',
  '../../../etc/passwd',
  "' OR '1'='1' --",
  '"; DROP TABLE "Tenant"; --',
  '{{7*7}}',
  '${jndi:ldap://x}',
  '__proto__',
  'constructor',
  'x'.repeat(257),
  'x'.repeat(5000),
  '\u{1F4A9}'.repeat(300),
  'true',
  '1e309',
  '-0',
  'NaN',
  '0000-01-01',
  '0000-01-01T00:00:00Z',
  '+275760-09-13T00:00:00Z',
  '-271821-04-19',
  '9999-12-31T23:59:59-14:00',
  '2024-02-30',
  'ENABLED',
  'DISABLED',
  'SUSPENDED',
  'ROLE_TENANT_MANAGEMENT',
  'management',
  'devices/{deviceName}/#',
  '{unknown}',
  '#',
  '+/+',
];

/** Regexes that hang, crash or slow down a backtracking engine or its analysers. */
export const HOSTILE_PATTERNS = [
  '^(a|\\1a)*$',
  'a{99999999999}',
  '^(a?){25}a{25}$',
  '(a+)+$',
  '^(\\w+\\s?)*$',
  '(a|a)*$',
  '(.*){1,32000}[bc]',
  '((a{10}){10}){10}',
  '.{0,1000}',
  '(?=a)a',
  '(?<!a)b',
  '\\k<n>',
  '(?<n>a)\\k<n>',
  '[',
  '(',
  '*',
  '\\',
  '[z-a]',
  '(?P<x>a)(?P<x>b)',
  '\\p{Nope}',
  '\u0000',
  '^(.+)$',
];

export const HUGE_NUMBERS = [0, -1, 1.5, -0.5, 1e308, -1e308, 2 ** 53 + 2, Number.MAX_SAFE_INTEGER, 1e21, 2 ** 31, -(2 ** 31) - 1, 65536];

export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string16bits({ maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom('\u0000', '\u0007', '\u001b', '\u0085', '\u2028', 'a', '/', '#', '+', '%'), maxLength: 12 }) },
);

/** A value of any JSON type, hostile where it is a string or a number. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 5, arbitrary: hostileString },
  { weight: 2, arbitrary: fc.constantFrom(...HUGE_NUMBERS) },
  { weight: 2, arbitrary: fc.constantFrom<unknown>(null, true, false, [], {}, [null], [''], { a: {} }, ['\u0000'], { __proto__: 1 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.array(hostileString, { maxLength: 4 }) },
);

export const hostileRegex: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...HOSTILE_PATTERNS) },
  {
    weight: 2,
    arbitrary: fc.string({
      unit: fc.constantFrom('(', ')', 'a', '*', '+', '?', '{', '}', '1', '0', '9', ',', '|', '\\', '[', ']', '^', '$', '.', '<', '=', '!'),
      minLength: 1,
      maxLength: 40,
    }),
  },
);

/** A whole body that is not the object a route takes, as JSON text. */
export const hostileRawJson: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '',
    '{',
    '{"a":',
    '[]',
    'null',
    '0',
    '"x"',
    '{"__proto__":{"admin":true}}',
    '{"constructor":{"prototype":{"x":1}}}',
    '{"a":1e999999}',
    '{"a":-1e999999}',
    '{"a":123456789012345678901234567890}',
    '{"a":"\\ud800"}',
    '{"a":"\\u0000"}',
    '{"a\\u0000":1}',
    '\ufeff{}',
    '{"a":1,"a":2}',
    `${'['.repeat(50_000)}${']'.repeat(50_000)}`,
    `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`,
  ),
  fc.json({ maxDepth: 4 }),
  fc.string({ unit: 'binary', maxLength: 60 }),
);

/** DER mutations of a certificate or CRL, returned as PEM or bare base64 text. */
export function pemMutation(ders: Uint8Array[]): fc.Arbitrary<string> {
  return fc
    .record({
      der: fc.constantFrom(...ders),
      kind: fc.constantFrom('flip', 'truncate', 'append', 'length', 'tag', 'zero', 'chars', 'armourless', 'crlf', 'twice', 'label', 'random', 'many'),
      at: fc.nat(),
      byte: fc.integer({ min: 0, max: 255 }),
      random: fc.uint8Array({ maxLength: 400 }),
    })
    .map(({ der, kind, at, byte, random }) => {
      const bytes = Buffer.from(der);
      const i = at % bytes.length;
      const pem = (b: Uint8Array, label = 'CERTIFICATE') =>
        `-----BEGIN ${label}-----\n${(Buffer.from(b).toString('base64').match(/.{1,64}/g) ?? []).join('\n')}\n-----END ${label}-----\n`;
      switch (kind) {
        case 'flip':
          bytes[i] ^= byte || 1;
          return pem(bytes);
        case 'truncate':
          return pem(bytes.subarray(0, i));
        case 'append':
          return pem(Buffer.concat([bytes, random]));
        case 'length':
          // An outer length that claims far more than there is.
          return pem(Buffer.concat([Buffer.from([0x30, 0x84, 0x7f, 0xff, 0xff, byte]), bytes.subarray(4)]));
        case 'tag':
          bytes[0] = byte;
          return pem(bytes);
        case 'zero':
          bytes.fill(0, i, Math.min(i + 16, bytes.length));
          return pem(bytes);
        case 'chars': {
          const text = pem(bytes).split('');
          const body = text.indexOf('\n') + 1 + (i % 40);
          text[body] = String.fromCharCode(byte);
          return text.join('');
        }
        case 'armourless':
          return bytes.toString('base64');
        case 'crlf':
          return pem(bytes).replace(/\n/g, i % 2 ? '\r\n' : ' ');
        case 'twice':
          return pem(bytes) + pem(bytes);
        case 'label':
          return pem(bytes, i % 2 ? 'X509 CRL' : 'PRIVATE KEY');
        case 'random':
          return pem(random);
        case 'many':
          return pem(bytes).repeat(20 + (i % 40));
        default:
          return pem(bytes);
      }
    });
}
