# syntax=docker/dockerfile:1
# Build stage: install everything, generate the Prisma client, compile TypeScript.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json prisma.config.ts ./
COPY prisma ./prisma
COPY scripts ./scripts
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx prisma generate && npm run build && npm prune --omit=dev

# Runtime stage: compiled code, production dependencies and migrations only.
FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    HTTP_PORT=8080 \
    MQTT_TLS_PORT=8883 \
    DATA_DIR=/var/lib/certgate
WORKDIR /app
RUN groupadd --system certgate && useradd --system --gid certgate --home /var/lib/certgate certgate \
 && mkdir -p /var/lib/certgate && chown certgate:certgate /var/lib/certgate
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/prisma ./prisma
COPY --from=build /app/package.json ./package.json
USER certgate
EXPOSE 8080 8883
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s CMD node -e "fetch('http://127.0.0.1:'+process.env.HTTP_PORT+'/ready').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/server.js"]
