-- Device-profile ACL deny rules: publish and subscribe filters refused whatever the allow rules say.

-- AlterTable
ALTER TABLE "DeviceProfile" ADD COLUMN     "aclDenyPublish" TEXT[] DEFAULT ARRAY[]::TEXT[],
ADD COLUMN     "aclDenySubscribe" TEXT[] DEFAULT ARRAY[]::TEXT[];
