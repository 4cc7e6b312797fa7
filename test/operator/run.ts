/**
 * Runs a certgate command to its end as an operator would in a shell: its output and exit status,
 * or a failure when it is still running after `timeoutMs` (a command that should have stopped, or
 * printed help, started a service instead).
 */
import { spawn } from 'node:child_process';
import { REPO } from '../helpers/service.js';

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment of a fresh shell: none of certgate's settings from the test run. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(DATABASE_URL|MANAGEMENT_ADMIN_PASSWORD|VERIFIER_TOKEN|VERIFIER_URL|MQTT_TLS_.*|HTTP_.*|DATA_DIR|LOG_.*|METRICS_.*|DOCS_.*|NODE_TEST_CONTEXT)$/.test(k)) continue;
    env[k] = v;
  }
  return { ...env, HTTP_HOST: '127.0.0.1', MQTT_TLS_HOST: '127.0.0.1', ...extra };
}

/** `npm start` is `node --import tsx src/server.ts`; `certgate <args>` is `node bin/certgate.js <args>`. */
export function runToEnd(args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 90_000): Promise<Finished> {
  const [cmd, argv] =
    args[0] === 'npm-start'
      ? [process.execPath, ['--import', 'tsx', 'src/server.ts', ...args.slice(1)]]
      : [process.execPath, ['bin/certgate.js', ...args]];
  const child = spawn(cmd, argv, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
      reject(new Error(`certgate ${args.join(' ')} still ran after ${timeoutMs} ms:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    // 'close' comes after the exit and after the output has been read to its end.
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
