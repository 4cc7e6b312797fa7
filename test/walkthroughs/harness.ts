/**
 * docs/walkthroughs.md is run as written. Each walkthrough starts at a
 * `<!-- walkthrough: NAME -->` marker and ends at the next `## ` heading; its ```sh blocks run in
 * order in one bash session (variables and the working directory carry over, as in a terminal)
 * against a certgate started by the test, with the variables of "Before you start" set to that
 * service. A ```text block after a ```sh block is that block's expected output: its lines must
 * appear in the output in that order (other lines may come between), `...` standing for any text.
 * Any command that fails (outside `||`, `if` and the like) fails the walkthrough.
 */
import { spawn, execFileSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { REPO, api, startService, until, type Service } from '../helpers/service.js';

export const MGMT_PASS = 'walkthrough-management-pass';

export interface Block {
  code: string;
  /** Line of the opening fence in the markdown (1-based), for messages. */
  line: number;
  expected?: string;
}

/** The blocks of every walkthrough in the markdown, by name. */
export function parseWalkthroughs(markdown: string): Map<string, Block[]> {
  const out = new Map<string, Block[]>();
  const lines = markdown.split('\n');
  let current: Block[] | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const marker = /^<!-- walkthrough: ([a-z0-9-]+) -->$/.exec(line.trim());
    if (marker) {
      if (out.has(marker[1]!)) throw new Error(`walkthrough ${marker[1]} defined twice`);
      current = [];
      out.set(marker[1]!, current);
      continue;
    }
    if (line.startsWith('## ')) {
      current = undefined;
      continue;
    }
    const fence = /^```(\w*)\s*$/.exec(line);
    if (!fence) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i]!);
    if (i >= lines.length) throw new Error(`unclosed code block at line ${start + 1}`);
    if (!current) continue;
    const lang = fence[1];
    if (lang === 'sh') current.push({ code: body.join('\n'), line: start + 1 });
    else if (lang === 'text') {
      const last = current.at(-1);
      if (!last || last.expected !== undefined) throw new Error(`text block at line ${start + 1} follows no sh block`);
      last.expected = body.join('\n');
    }
  }
  return out;
}

let docs: Promise<Map<string, Block[]>> | undefined;

export function walkthrough(name: string): Promise<Block[]> {
  docs ??= fs.readFile(path.join(REPO, 'docs/walkthroughs.md'), 'utf8').then(parseWalkthroughs);
  return docs.then((all) => {
    const blocks = all.get(name);
    if (!blocks || blocks.length === 0) throw new Error(`no walkthrough "${name}" in docs/walkthroughs.md`);
    return blocks;
  });
}

/** Whether `expected` (lines, `...` wildcards) appears in `actual` in order. */
export function matchesExpected(actual: string, expected: string): { ok: true } | { ok: false; missing: string } {
  const want = expected
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && l !== '...');
  const have = actual.split('\n').map((l) => l.trim());
  let at = 0;
  for (const w of want) {
    const re = new RegExp(`^${w.split('...').map(escapeRegExp).join('.*')}$`);
    while (at < have.length && !re.test(have[at]!)) at++;
    if (at === have.length) return { ok: false, missing: w };
    at++;
  }
  return { ok: true };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Background subscribers a block starts: `mosquitto_sub ... &` (continuation lines joined). */
export function backgroundSubscribers(code: string): number {
  return code
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((l) => /\bmosquitto_sub\b.*&\s*$/.test(l)).length;
}

/** Whether a block that starts a background subscriber waits for its SUBACK itself (`-d` prints "Subscribed"). */
export function waitsForSubscription(code: string): boolean {
  return /\bmosquitto_sub\b[^&]*\s-d\b/.test(code.replace(/\\\n/g, ' ')) && /grep -qs "\^Subscribed"/.test(code);
}

/**
 * One bash process fed block after block on stdin, like a user pasting into a terminal.
 * Each block runs with stdin from /dev/null (so no command can read the rest of the script)
 * and ends with a sentinel line carrying a nonce.
 */
export class Shell {
  private readonly child: ChildProcessWithoutNullStreams;
  private out = '';
  private readonly nonce = crypto.randomBytes(8).toString('hex');
  private waiter: (() => void) | undefined;
  private exited = false;

  constructor(cwd: string, env: NodeJS.ProcessEnv) {
    this.child = spawn('bash', ['--noprofile', '--norc'], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const onData = (d: Buffer) => {
      this.out += d.toString();
      this.waiter?.();
    };
    this.child.stdout.on('data', onData);
    this.child.stderr.on('data', onData);
    this.child.once('exit', () => {
      this.exited = true;
      this.waiter?.();
    });
    this.child.stdin.write(
      'exec 2>&1\nset -o pipefail\n' +
        `trap 'printf "\\n@@ERR-${this.nonce} status %s: %s\\n" "$?" "$BASH_COMMAND"' ERR\n`,
    );
  }

  /** Runs one block; resolves with its output and the commands that failed in it. */
  async run(code: string, timeoutMs = 120_000): Promise<{ output: string; failed: string[] }> {
    const from = this.out.length;
    const end = `@@END-${this.nonce}@@`;
    this.child.stdin.write(`{\n${code}\n} </dev/null\nprintf '\\n${end}\\n'\n`);
    const deadline = Date.now() + timeoutMs;
    while (!this.out.includes(end, from)) {
      if (this.exited) throw new Error(`bash exited during the block:\n${this.out.slice(from)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`block did not finish in ${timeoutMs} ms:\n${this.out.slice(from)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1_000));
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    const raw = this.out.slice(from, this.out.indexOf(end, from));
    const errRe = new RegExp(`^@@ERR-${this.nonce} (.*)$`, 'gm');
    const failed = [...raw.matchAll(errRe)].map((m) => m[1]!);
    return { output: raw.replace(errRe, '').replace(/\n{3,}/g, '\n\n').trim(), failed };
  }

  /** Output that arrived after the last block ended (from background jobs). */
  since(): string {
    const end = `@@END-${this.nonce}@@`;
    const i = this.out.lastIndexOf(end);
    return i < 0 ? this.out : this.out.slice(i + end.length);
  }

  /** Stops background jobs a walkthrough left running, then bash. */
  async close(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    this.child.stdin.end('kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; exit 0\n');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await gone;
    clearTimeout(timer);
  }
}

export interface WalkthroughEnv {
  service: Service;
  /**
   * The walkthroughs call `npx certgate ...`, which finds the command when run inside the
   * checkout. The test's working directories are elsewhere, so this directory, first on PATH,
   * holds an `npx` that tells the real one where the checkout is.
   */
  npxShimDir: string;
  /** The variables "Before you start" tells users to set. */
  vars: Record<string, string>;
}

/**
 * One certgate for the test file, started as `npm start` starts it (`tsx src/server.ts`, its TLS
 * files under a temporary DATA_DIR), stopped after the file's tests. Its database is one of the
 * test PostgreSQL's (DATABASE_URL), which saves each file starting a PostgreSQL of its own.
 */
export function serviceForFile(): () => WalkthroughEnv {
  let env: WalkthroughEnv | undefined;
  let db: TestDatabase | undefined;
  let npxShimDir: string | undefined;
  before(async () => {
    const npx = execFileSync('bash', ['-c', 'command -v npx'], { encoding: 'utf8' }).trim();
    npxShimDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-npx-'));
    await fs.writeFile(path.join(npxShimDir, 'npx'), `#!/bin/sh\nexec '${npx}' --prefix '${REPO}' "$@"\n`, { mode: 0o755 });
    db = await createTestDatabase();
    const service = await startService({ env: { MANAGEMENT_ADMIN_PASSWORD: MGMT_PASS, DATABASE_URL: db.url } });
    env = {
      service,
      npxShimDir,
      vars: {
        CERTGATE: service.httpUrl,
        MQTT_HOST: 'localhost',
        MQTT_PORT: String(service.mqttPort),
        SERVER_CA: service.serverCaPath,
        MGMT_PASS,
      },
    };
  });
  after(async () => {
    await env?.service.stop();
    await db?.drop();
    if (npxShimDir) await fs.rm(npxShimDir, { recursive: true, force: true });
  });
  return () => {
    if (!env) throw new Error('service not started');
    return env;
  };
}

/**
 * Test steps around the blocks whose code contains `when`: checks with MQTT.js or the API that a
 * shell cannot make, or a wait a user makes without noticing (reading the auth events a moment
 * after a refusal). Every hook must find its block, so a reworded walkthrough cannot skip it.
 */
export interface Hook {
  when: string;
  /** `dir` is the walkthrough's working directory (where `cd` in a block does not follow). */
  before?: (dir: string) => Promise<void>;
  after?: (output: string, dir: string) => Promise<void>;
}

export interface RunOptions {
  hooks?: Hook[];
}

export interface RunResult {
  /** Working directory the walkthrough ran in. */
  dir: string;
  /** Output of each block, in order. */
  outputs: string[];
  /** All output. */
  all: string;
  shell: Shell;
}

/**
 * Runs a walkthrough's blocks against the service, asserting each block's commands succeed and
 * its expected output appears. After a block that starts background `mosquitto_sub`s, waits until
 * the tenant's auth events show that many more allowed connections, as a user would wait for the
 * subscriber before publishing.
 */
export async function runWalkthrough(t: TestContext, name: string, env: WalkthroughEnv, opts: RunOptions = {}): Promise<RunResult> {
  const blocks = await walkthrough(name);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `certgate-walkthrough-${name}-`));
  const shell = new Shell(dir, {
    ...process.env,
    ...env.vars,
    PATH: `${env.npxShimDir}:${process.env.PATH}`,
    NO_COLOR: '1',
  });
  t.after(async () => {
    await shell.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  const outputs: string[] = [];
  const hooks = opts.hooks ?? [];
  const used = new Set<Hook>();
  for (const block of blocks) {
    const mine = hooks.filter((h) => block.code.includes(h.when));
    for (const h of mine) {
      used.add(h);
      await h.before?.(dir);
    }
    const where = `docs/walkthroughs.md:${block.line} (${name})`;
    // The reader runs the next block at once: a subscriber started in the background must be
    // waited for by the block itself, or the next publish may come before its subscription.
    if (backgroundSubscribers(block.code) > 0) {
      assert.ok(waitsForSubscription(block.code), `${where}: a background mosquitto_sub whose block does not wait for its SUBACK`);
    }
    const { output, failed } = await shell.run(block.code);
    outputs.push(output);
    assert.deepEqual(failed, [], `${where}: a command failed\n--- block\n${block.code}\n--- output\n${output}`);
    if (block.expected !== undefined) {
      const m = matchesExpected(output, block.expected);
      assert.ok(m.ok, `${where}: expected output line not found: ${m.ok ? '' : m.missing}\n--- output\n${output}`);
    }
    for (const h of mine) await h.after?.(output, dir);
  }
  const unused = hooks.filter((h) => !used.has(h)).map((h) => h.when);
  assert.deepEqual(unused, [], `hooks whose block is no longer in the ${name} walkthrough`);
  return { dir, outputs, all: outputs.join('\n'), shell };
}
