/** certgate's pure X.509 layer: no Fastify, no Prisma. */
export * from './certificate.js';
export * from './ca-rules.js';
export * from './crl.js';
export * from './identity.js';
export * from './path-validation.js';
export * from './possession.js';
export * from './reasons.js';
export { checkNameConstraints, MAX_CONSTRAINT_COMPARISONS } from './name-constraints.js';
export type { GeneralName, Name } from './names.js';
export type { PublicKeyInfo, SignatureAlgorithm } from './algorithms.js';
export { OID, ekuName } from './oids.js';
export { extensionName, KEY_USAGE_BITS } from './extensions.js';
