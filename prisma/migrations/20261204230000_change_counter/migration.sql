-- One number that every change to what the verifier trusts increases, in the change's own
-- transaction (see src/db/change-feed.ts). A process that has applied the changes up to the number
-- it reads may trust its caches; one that finds a higher number has missed a change.

-- CreateTable
CREATE TABLE "ChangeCounter" (
    "id" SMALLINT NOT NULL DEFAULT 1,
    "seq" BIGINT NOT NULL DEFAULT 0,

    CONSTRAINT "ChangeCounter_pkey" PRIMARY KEY ("id")
);

INSERT INTO "ChangeCounter" ("id", "seq") VALUES (1, 0);
