/** What every tenant's default profile holds. */
export function defaultProfileData() {
  return {
    name: 'default',
    isDefault: true,
    identitySource: 'COMMON_NAME' as const,
    identityPattern: '^(.+)$',
    clientIdPolicy: 'MUST_MATCH_DEVICE_NAME' as const,
    aclPublish: ['devices/{deviceName}/#'],
    aclSubscribe: ['devices/{deviceName}/#'],
  };
}
