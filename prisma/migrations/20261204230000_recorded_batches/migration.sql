-- Batches of auth events already written, by the id their process gave them: a batch tried again
-- after an outage, whose first attempt committed after all (the connection was lost after COMMIT
-- was sent), is recognised and not written twice. Rows older than a day are deleted by the writers.

-- CreateTable
CREATE TABLE "RecordedBatch" (
    "id" UUID NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "RecordedBatch_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "RecordedBatch_createdAt_idx" ON "RecordedBatch"("createdAt");
