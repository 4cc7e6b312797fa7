/**
 * Runs the real `certgate` command (bin/certgate.js, on this test's Node) and the real openssl
 * and keytool binaries against the files it writes.
 */
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin/certgate.js');

export const hasKeytool = spawnSync('keytool', ['-help'], { stdio: 'ignore' }).error === undefined;

export async function tempDir(t: TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-certs-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `certgate <args>` in `cwd`; never throws for a non-zero exit. */
export async function certgate(cwd: string, ...args: string[]): Promise<RunResult> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, NO_COLOR: '1' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** `certgate certs <args>` that must succeed. */
export async function certs(cwd: string, ...args: string[]): Promise<string> {
  const r = await certgate(cwd, 'certs', ...args);
  if (r.code !== 0) throw new Error(`certgate certs ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** A tool that must succeed; stdout and stderr together (openssl verify reports on both). */
export async function tool(cwd: string, cmd: string, ...args: string[]): Promise<string> {
  const { stdout, stderr } = await exec(cmd, args, { cwd });
  return stdout + stderr;
}

/** A tool that may fail: its exit status and output. */
export async function toolResult(cwd: string, cmd: string, ...args: string[]): Promise<RunResult> {
  try {
    const { stdout, stderr } = await exec(cmd, args, { cwd });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

export const openssl = (cwd: string, ...args: string[]) => tool(cwd, 'openssl', ...args);

export async function x509Text(cwd: string, file: string): Promise<string> {
  return openssl(cwd, 'x509', '-in', file, '-noout', '-text');
}

/** Subjects of the certificates in a PEM bundle, in order, as openssl prints them. */
export async function bundleSubjects(cwd: string, file: string): Promise<string[]> {
  const pem = await fs.readFile(path.join(cwd, file), 'utf8');
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const subjects: string[] = [];
  for (const [i, block] of blocks.entries()) {
    const f = path.join(cwd, `.bundle-${i}.pem`);
    await fs.writeFile(f, block);
    subjects.push((await openssl(cwd, 'x509', '-in', f, '-noout', '-subject', '-nameopt', 'RFC2253')).trim().replace(/^subject=/, ''));
    await fs.rm(f);
  }
  return subjects;
}
