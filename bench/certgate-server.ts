/**
 * certgate as the benchmark runs it: the real server (startServer) in its own process. With
 * BENCH_PROFILE set, the parent brackets each measured run with `profile-start`/`profile-stop`
 * messages and this process writes one V8 CPU profile per run there.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { Session } from 'node:inspector/promises';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/server.js';
import { releaseShutdownSignals } from '../src/db/embedded-postgres.js';

const server = await startServer(loadConfig(process.env));
// As `npm start`: this process closes in order on SIGTERM (listeners flush, PostgreSQL last).
releaseShutdownSignals();

const profileDir = process.env.BENCH_PROFILE;
let session: Session | undefined;
process.on('message', async (m: { type?: string; name?: string }) => {
  if (!profileDir) return;
  if (m.type === 'profile-start') {
    session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 200 });
    await session.post('Profiler.start');
    process.send?.({ type: 'profile-started' });
  } else if (m.type === 'profile-stop' && session) {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    session = undefined;
    const file = path.join(profileDir, `${m.name ?? 'run'}.cpuprofile`);
    await fs.mkdir(profileDir, { recursive: true });
    await fs.writeFile(file, JSON.stringify(profile));
    process.send?.({ type: 'profile-stopped', file });
  }
});

process.send?.({ ready: true, address: server.httpAddress });
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  void server.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('disconnect', stop);
