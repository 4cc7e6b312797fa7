import { z } from 'zod';
import { isValidTopicFilter } from '../../mqtt/topics.js';

const topicTemplate = z
  .string()
  .min(1)
  .max(256)
  .refine((t) => !/\{(?!deviceName\}|deviceId\})[^}]*\}/.test(t), 'only {deviceName} and {deviceId} may be used')
  .refine((t) => !t.includes('\u0000'), 'must not contain NUL')
  .refine(
    (t) => isValidTopicFilter(t.replaceAll('{deviceName}', 'x').replaceAll('{deviceId}', 'x')),
    'must be an MQTT topic filter: `#` only as the whole last level, `+` only as a whole level',
  );

const identitySource = z.enum(['COMMON_NAME', 'SAN_URI', 'SAN_DNS']);
const identityPattern = z
  .string()
  .min(1)
  .max(256)
  .describe(
    'RE2 regular expression applied to the source value; capture group 1 (or the whole match when it has no group) ' +
      'is the device name. RE2 syntax (https://github.com/google/re2/wiki/Syntax): no backreferences (`\\1`, `\\k<n>`) ' +
      'and no lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`), which a 422 names; matching takes time linear in the value. ' +
      'At most 500 elements once counted repetitions are unrolled (`.{0,1000}` is refused); source values longer than ' +
      '1,024 characters match nothing. See docs/identity-patterns.md.',
  );
const identityUriPrefix = z.string().min(1).max(256).optional().describe('For SAN_URI: the first URI SAN with this prefix is used');

export const identitySchema = z.strictObject({
  source: identitySource.default('COMMON_NAME'),
  pattern: identityPattern.default('^(.+)$'),
  uriPrefix: identityUriPrefix,
});

/** For updates: no defaults, so a field left out keeps its stored value instead of being reset. */
const identityUpdateSchema = z.strictObject({
  source: identitySource.optional(),
  pattern: identityPattern.optional(),
  uriPrefix: identityUriPrefix,
});

const topicTemplates = z.array(topicTemplate).max(50);

const aclDenySchema = z
  .strictObject({
    publish: topicTemplates.optional().describe('Topics the device may never publish to, whatever the allow rules say'),
    subscribe: topicTemplates
      .optional()
      .describe(
        'Topics the device may never receive: a subscription these filters cover is refused; a wider subscription ' +
          '(`#`) is granted, but messages on a topic they match are not delivered to the device',
      ),
  })
  .describe(
    'Deny rules, same filters and placeholders as the allow rules. A deny always wins over an allow. ' +
      'Left out on create: none. On update, a list left out keeps its stored value; `[]` removes it.',
  );

export const aclSchema = z.strictObject({
  publish: topicTemplates,
  subscribe: topicTemplates,
  deny: aclDenySchema.optional(),
});

export const deviceProfileSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    default: z.boolean(),
    identity: z.object({
      source: z.enum(['COMMON_NAME', 'SAN_URI', 'SAN_DNS']),
      pattern: z.string(),
      uriPrefix: z.string().optional(),
    }),
    clientIdPolicy: z.enum(['MUST_MATCH_DEVICE_NAME', 'ANY']),
    autoRegistration: z.object({ maxNewDevicesPerHour: z.number().int().optional() }),
    acl: z.object({
      publish: z.array(z.string()),
      subscribe: z.array(z.string()),
      deny: z
        .object({ publish: z.array(z.string()), subscribe: z.array(z.string()) })
        .optional()
        .describe('Present when the profile has deny rules: they win over the allow rules'),
    }),
    creationTime: z.string(),
    self: z.string(),
  })
  .meta({ id: 'DeviceProfile' });

const autoRegistrationSchema = z.strictObject({
  maxNewDevicesPerHour: z.number().int().min(0).max(1_000_000).nullable().optional(),
});

export const createDeviceProfileBody = z.strictObject({
  name: z.string().trim().min(1).max(128),
  default: z.boolean().optional(),
  identity: identitySchema.optional(),
  clientIdPolicy: z.enum(['MUST_MATCH_DEVICE_NAME', 'ANY']).optional(),
  autoRegistration: autoRegistrationSchema.optional(),
  acl: aclSchema.partial().optional(),
}).meta({
  examples: [
    {
      name: 'sensors',
      clientIdPolicy: 'MUST_MATCH_DEVICE_NAME',
      acl: {
        publish: ['devices/{deviceName}/#'],
        subscribe: ['devices/{deviceName}/#', 'fleet/#'],
        deny: { publish: ['devices/{deviceName}/config'], subscribe: ['fleet/admin/#'] },
      },
    },
  ],
});

export const updateDeviceProfileBody = z.strictObject({
  name: z.string().trim().min(1).max(128).optional(),
  default: z.literal(true).optional().describe('Makes this the default profile; the default cannot be unset, only moved'),
  identity: identityUpdateSchema.optional(),
  clientIdPolicy: z.enum(['MUST_MATCH_DEVICE_NAME', 'ANY']).optional(),
  autoRegistration: autoRegistrationSchema.optional(),
  acl: aclSchema.partial().optional(),
});

export const profilesParams = z.strictObject({ tenantId: z.string().min(1).max(64) });
export const profileParams = profilesParams.extend({ profileId: z.string().min(1).max(64) });

export type CreateDeviceProfileInput = z.output<typeof createDeviceProfileBody>;
export type UpdateDeviceProfileInput = z.output<typeof updateDeviceProfileBody>;
export type DeviceProfileView = Omit<z.output<typeof deviceProfileSchema>, 'self'>;
