-- Persistent MQTT sessions of a listener that was shut down, until it takes them back.

-- CreateTable
CREATE TABLE "MqttSession" (
    "tenantId" TEXT NOT NULL,
    "clientIdHash" TEXT NOT NULL,
    "expiresAt" TIMESTAMPTZ(3) NOT NULL,
    "state" JSONB NOT NULL,

    CONSTRAINT "MqttSession_pkey" PRIMARY KEY ("tenantId","clientIdHash")
);

-- AddForeignKey
ALTER TABLE "MqttSession" ADD CONSTRAINT "MqttSession_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;
