/**
 * Whether an EC public key's point lies on its named curve (SEC 1 v2 3.2.2.1, the public key
 * validation NIST SP 800-56A 5.6.2.3.3 asks for): the point is not the point at infinity, its
 * coordinates are field elements, and y^2 = x^3 + ax + b (mod p).
 *
 * OpenSSL refuses such a key when it is imported (`createPublicKey` throws), but certgate stores
 * CAs and credentials without importing their keys and reports why a path fails: checked here, an
 * off-curve key is a WEAK_KEY at upload and in every path, not a signature that fails to verify.
 * The subgroup check is not needed: every curve below has cofactor 1.
 *
 * Cost, measured on Node 24 here: ~4 µs for an uncompressed P-256 point (BigInt arithmetic); a
 * compressed point also needs a modular exponentiation (~0.1 ms), and is rare in certificates.
 */

interface CurveParams {
  /** Field size in octets: the length of each coordinate in the encoding. */
  readonly size: number;
  readonly p: bigint;
  readonly a: bigint;
  readonly b: bigint;
}

/** Domain parameters (SEC 2 2.4-2.6 for the NIST curves, RFC 5639 3.4-3.7 for Brainpool), by name. */
const PARAMS: Readonly<Record<string, CurveParams>> = {
  'P-256': {
    size: 32,
    p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
    a: 0xffffffff00000001000000000000000000000000fffffffffffffffffffffffcn,
    b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
  },
  'P-384': {
    size: 48,
    p: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffffn,
    a: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000fffffffcn,
    b: 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn,
  },
  'P-521': {
    size: 66,
    p: 0x01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffn,
    a: 0x01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffcn,
    b: 0x0051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00n,
  },
  brainpoolP256r1: {
    size: 32,
    p: 0xa9fb57dba1eea9bc3e660a909d838d726e3bf623d52620282013481d1f6e5377n,
    a: 0x7d5a0975fc2c3057eef67530417affe7fb8055c126dc5c6ce94a4b44f330b5d9n,
    b: 0x26dc5c6ce94a4b44f330b5d9bbd77cbf958416295cf7e1ce6bccdc18ff8c07b6n,
  },
  brainpoolP384r1: {
    size: 48,
    p: 0x8cb91e82a3386d280f5d6f7e50e641df152f7109ed5456b412b1da197fb71123acd3a729901d1a71874700133107ec53n,
    a: 0x7bc382c63d8c150c3c72080ace05afa0c2bea28e4fb22787139165efba91f90f8aa5814a503ad4eb04a8c7dd22ce2826n,
    b: 0x04a8c7dd22ce28268b39b55416f0447c2fb77de107dcd2a62e880ea53eeb62d57cb4390295dbc9943ab78696fa504c11n,
  },
  brainpoolP512r1: {
    size: 64,
    p: 0xaadd9db8dbe9c48b3fd4e6ae33c9fc07cb308db3b3c9d20ed6639cca703308717d4d9b009bc66842aecda12ae6a380e62881ff2f2d82c68528aa6056583a48f3n,
    a: 0x7830a3318b603b89e2327145ac234cc594cbdd8d3df91610a83441caea9863bc2ded5d5aa8253aa10a2ef1c98b9ac8b57f1117a72bf2c7b9e7c1ac4d77fc94can,
    b: 0x3df91610a83441caea9863bc2ded5d5aa8253aa10a2ef1c98b9ac8b57f1117a72bf2c7b9e7c1ac4d77fc94cadc083e67984050b75ebae5dd2809bd638016f723n,
  },
};

/** Curves whose points `pointProblem` can check. */
export function canCheckPoint(curve: string): boolean {
  return PARAMS[curve] !== undefined;
}

function toBig(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt('0x' + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex'));
}

function mod(x: bigint, p: bigint): bigint {
  const r = x % p;
  return r < 0n ? r + p : r;
}

function modPow(base: bigint, exp: bigint, p: bigint): bigint {
  let result = 1n;
  let b = mod(base, p);
  for (let e = exp; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % p;
    b = (b * b) % p;
  }
  return result;
}

/**
 * Why the encoded point (SEC 1 2.3.3: 04 x y, or 02/03 x) is not a point of `curve`, or null when
 * it is. Null too for a curve this module has no parameters for (the caller refuses those).
 */
export function pointProblem(curve: string, point: Uint8Array): string | null {
  const c = PARAMS[curve];
  if (!c) return null;
  const form = point[0];
  if (point.length === 1 && form === 0x00) return 'EC public key is the point at infinity';
  let x: bigint;
  let y: bigint | null = null;
  if (form === 0x04 && point.length === 1 + 2 * c.size) {
    x = toBig(point.subarray(1, 1 + c.size));
    y = toBig(point.subarray(1 + c.size));
  } else if ((form === 0x02 || form === 0x03) && point.length === 1 + c.size) {
    x = toBig(point.subarray(1));
  } else {
    return `EC public key is not an uncompressed or compressed point of ${curve}`;
  }
  if (x >= c.p || (y !== null && y >= c.p)) return `EC public key coordinates are not elements of the field of ${curve}`;
  const rhs = mod(((x * x) % c.p) * x + c.a * x + c.b, c.p);
  if (y !== null) {
    return (y * y) % c.p === rhs ? null : `EC public key point is not on the curve ${curve}`;
  }
  // Compressed: x is valid when x^3 + ax + b is a square mod p (Euler's criterion).
  return rhs === 0n || modPow(rhs, (c.p - 1n) / 2n, c.p) === 1n ? null : `EC public key point is not on the curve ${curve}`;
}
