/** `npm run openapi`: writes openapi/openapi.json from the route schemas. */
import fs from 'node:fs/promises';
import { generateOpenApiDocument, serializeOpenApi } from '../src/openapi-document.js';

const target = new URL('../openapi/openapi.json', import.meta.url);
await fs.writeFile(target, serializeOpenApi(await generateOpenApiDocument()));
process.stdout.write(`wrote ${target.pathname}\n`);
