-- The MQTT listener's retained messages, so they survive a restart; deleted with their tenant.

-- CreateTable
CREATE TABLE "MqttRetained" (
    "tenantId" TEXT NOT NULL,
    "topicHash" TEXT NOT NULL,
    "topic" TEXT NOT NULL,
    "payload" BYTEA NOT NULL,
    "qos" INTEGER NOT NULL,
    "properties" JSONB,
    "expiresAt" TIMESTAMPTZ(3),
    "updatedAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "MqttRetained_pkey" PRIMARY KEY ("tenantId","topicHash")
);

-- AddForeignKey
ALTER TABLE "MqttRetained" ADD CONSTRAINT "MqttRetained_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;
