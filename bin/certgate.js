#!/usr/bin/env node
// The `certgate` command. From a source checkout it runs src/cli/main.ts through tsx;
// from a build without sources (the Docker image) it runs the compiled dist/cli/main.js.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
let cli;
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(source.href);
} else {
  cli = await import(new URL('../dist/cli/main.js', import.meta.url).href);
}
await cli.run(process.argv.slice(2));
