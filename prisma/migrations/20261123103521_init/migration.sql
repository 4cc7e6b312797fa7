-- CreateEnum
CREATE TYPE "TenantStatus" AS ENUM ('ACTIVE', 'SUSPENDED');

-- CreateEnum
CREATE TYPE "EnabledStatus" AS ENUM ('ENABLED', 'DISABLED');

-- CreateEnum
CREATE TYPE "DeviceStatus" AS ENUM ('ACTIVE', 'DISABLED');

-- CreateEnum
CREATE TYPE "DeviceOrigin" AS ENUM ('API', 'AUTO_REGISTRATION');

-- CreateEnum
CREATE TYPE "CredentialStatus" AS ENUM ('ACTIVE', 'REVOKED');

-- CreateEnum
CREATE TYPE "CredentialSource" AS ENUM ('API', 'OBSERVED');

-- CreateEnum
CREATE TYPE "IdentitySource" AS ENUM ('COMMON_NAME', 'SAN_URI', 'SAN_DNS');

-- CreateEnum
CREATE TYPE "ClientIdPolicy" AS ENUM ('MUST_MATCH_DEVICE_NAME', 'ANY');

-- CreateTable
CREATE TABLE "Tenant" (
    "id" TEXT NOT NULL,
    "company" TEXT NOT NULL,
    "domain" TEXT NOT NULL,
    "status" "TenantStatus" NOT NULL DEFAULT 'ACTIVE',
    "creationTime" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Tenant_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "User" (
    "id" UUID NOT NULL,
    "tenantId" TEXT NOT NULL,
    "userName" TEXT NOT NULL,
    "email" TEXT,
    "passwordHash" TEXT NOT NULL,
    "roles" TEXT[],
    "creationTime" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "User_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "DeviceProfile" (
    "id" UUID NOT NULL,
    "tenantId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "isDefault" BOOLEAN NOT NULL DEFAULT false,
    "identitySource" "IdentitySource" NOT NULL DEFAULT 'COMMON_NAME',
    "identityPattern" TEXT NOT NULL DEFAULT '^(.+)$',
    "identityUriPrefix" TEXT,
    "clientIdPolicy" "ClientIdPolicy" NOT NULL DEFAULT 'MUST_MATCH_DEVICE_NAME',
    "maxNewDevicesPerHour" INTEGER,
    "aclPublish" TEXT[],
    "aclSubscribe" TEXT[],
    "creationTime" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "DeviceProfile_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "TrustedCertificate" (
    "id" UUID NOT NULL,
    "tenantId" TEXT NOT NULL,
    "fingerprint" TEXT NOT NULL,
    "sha256" TEXT NOT NULL,
    "subjectHash" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "status" "EnabledStatus" NOT NULL DEFAULT 'ENABLED',
    "autoRegistrationEnabled" BOOLEAN NOT NULL DEFAULT false,
    "certDer" BYTEA NOT NULL,
    "serialNumber" TEXT NOT NULL,
    "algorithmName" TEXT NOT NULL,
    "version" INTEGER NOT NULL,
    "issuer" TEXT NOT NULL,
    "subject" TEXT NOT NULL,
    "notBefore" TIMESTAMPTZ(3) NOT NULL,
    "notAfter" TIMESTAMPTZ(3) NOT NULL,
    "popValid" BOOLEAN NOT NULL DEFAULT false,
    "popCode" TEXT,
    "popCodeUsableUntil" TIMESTAMPTZ(3),
    "deviceProfileId" UUID,
    "creationTime" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "TrustedCertificate_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Device" (
    "id" UUID NOT NULL,
    "tenantId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "deviceProfileId" UUID NOT NULL,
    "status" "DeviceStatus" NOT NULL DEFAULT 'ACTIVE',
    "createdBy" "DeviceOrigin" NOT NULL DEFAULT 'API',
    "pinCredentials" BOOLEAN NOT NULL DEFAULT false,
    "creationTime" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "lastConnectedAt" TIMESTAMPTZ(3),

    CONSTRAINT "Device_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "DeviceCredential" (
    "credentialsId" TEXT NOT NULL,
    "tenantId" TEXT NOT NULL,
    "deviceId" UUID NOT NULL,
    "credentialsType" TEXT NOT NULL DEFAULT 'X509_CERTIFICATE',
    "certDer" BYTEA NOT NULL,
    "subject" TEXT NOT NULL,
    "issuer" TEXT NOT NULL,
    "serialNumber" TEXT NOT NULL,
    "notBefore" TIMESTAMPTZ(3) NOT NULL,
    "notAfter" TIMESTAMPTZ(3) NOT NULL,
    "status" "CredentialStatus" NOT NULL DEFAULT 'ACTIVE',
    "source" "CredentialSource" NOT NULL DEFAULT 'API',
    "firstSeenAt" TIMESTAMPTZ(3),
    "lastSeenAt" TIMESTAMPTZ(3),
    "creationTime" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "DeviceCredential_pkey" PRIMARY KEY ("credentialsId")
);

-- CreateTable
CREATE TABLE "RevokedSerial" (
    "id" UUID NOT NULL,
    "tenantId" TEXT NOT NULL,
    "serialHex" TEXT NOT NULL,
    "issuerFingerprint" TEXT NOT NULL DEFAULT '',
    "revocationDate" TIMESTAMPTZ(3) NOT NULL,
    "source" TEXT NOT NULL DEFAULT 'API',
    "creationTime" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "RevokedSerial_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "AuthEvent" (
    "id" BIGSERIAL NOT NULL,
    "tenantId" TEXT NOT NULL,
    "time" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "result" TEXT NOT NULL,
    "reason" TEXT,
    "message" TEXT NOT NULL,
    "clientId" TEXT,
    "deviceId" TEXT,
    "deviceName" TEXT,
    "fingerprint" TEXT,

    CONSTRAINT "AuthEvent_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Setting" (
    "key" TEXT NOT NULL,
    "value" TEXT NOT NULL,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Setting_pkey" PRIMARY KEY ("key")
);

-- CreateIndex
CREATE UNIQUE INDEX "User_tenantId_userName_key" ON "User"("tenantId", "userName");

-- CreateIndex
CREATE INDEX "DeviceProfile_tenantId_isDefault_idx" ON "DeviceProfile"("tenantId", "isDefault");

-- CreateIndex
CREATE UNIQUE INDEX "DeviceProfile_tenantId_name_key" ON "DeviceProfile"("tenantId", "name");

-- CreateIndex
CREATE INDEX "TrustedCertificate_fingerprint_idx" ON "TrustedCertificate"("fingerprint");

-- CreateIndex
CREATE INDEX "TrustedCertificate_subjectHash_idx" ON "TrustedCertificate"("subjectHash");

-- CreateIndex
CREATE UNIQUE INDEX "TrustedCertificate_tenantId_fingerprint_key" ON "TrustedCertificate"("tenantId", "fingerprint");

-- CreateIndex
CREATE INDEX "Device_tenantId_createdBy_creationTime_idx" ON "Device"("tenantId", "createdBy", "creationTime");

-- CreateIndex
CREATE UNIQUE INDEX "Device_tenantId_name_key" ON "Device"("tenantId", "name");

-- CreateIndex
CREATE INDEX "DeviceCredential_deviceId_idx" ON "DeviceCredential"("deviceId");

-- CreateIndex
CREATE INDEX "DeviceCredential_tenantId_idx" ON "DeviceCredential"("tenantId");

-- CreateIndex
CREATE UNIQUE INDEX "RevokedSerial_tenantId_serialHex_issuerFingerprint_key" ON "RevokedSerial"("tenantId", "serialHex", "issuerFingerprint");

-- CreateIndex
CREATE INDEX "AuthEvent_tenantId_time_idx" ON "AuthEvent"("tenantId", "time");

-- AddForeignKey
ALTER TABLE "User" ADD CONSTRAINT "User_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "DeviceProfile" ADD CONSTRAINT "DeviceProfile_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "TrustedCertificate" ADD CONSTRAINT "TrustedCertificate_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "TrustedCertificate" ADD CONSTRAINT "TrustedCertificate_deviceProfileId_fkey" FOREIGN KEY ("deviceProfileId") REFERENCES "DeviceProfile"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Device" ADD CONSTRAINT "Device_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Device" ADD CONSTRAINT "Device_deviceProfileId_fkey" FOREIGN KEY ("deviceProfileId") REFERENCES "DeviceProfile"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "DeviceCredential" ADD CONSTRAINT "DeviceCredential_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "DeviceCredential" ADD CONSTRAINT "DeviceCredential_deviceId_fkey" FOREIGN KEY ("deviceId") REFERENCES "Device"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "RevokedSerial" ADD CONSTRAINT "RevokedSerial_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "AuthEvent" ADD CONSTRAINT "AuthEvent_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;
