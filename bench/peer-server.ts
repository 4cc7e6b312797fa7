/**
 * The benchmark's peer baselines, one per child process:
 * `hello`: a Fastify POST route that answers a small JSON object (the framework floor);
 * `x509`: the same route doing a plain Node `crypto.X509Certificate` 2-link chain check: parse the
 * posted leaf and CA on every request, `checkIssued`, `verify`, and the validity dates of both.
 */
import { X509Certificate } from 'node:crypto';
import Fastify from 'fastify';

interface Body {
  clientId: string;
  certificateChain: string[];
}

const mode = process.argv[2];
const app = Fastify({ logger: false });

function valid(c: X509Certificate, now: number): boolean {
  return new Date(c.validFrom).getTime() <= now && now <= new Date(c.validTo).getTime();
}

if (mode === 'hello') {
  app.post('/verifier/v1/authenticate', async () => ({ result: 'allow' }));
} else if (mode === 'x509') {
  app.post<{ Body: Body }>('/verifier/v1/authenticate', async (req) => {
    const [leafPem, caPem] = req.body.certificateChain;
    const leaf = new X509Certificate(leafPem!);
    const ca = new X509Certificate(caPem!);
    const now = Date.now();
    const ok = ca.ca && leaf.checkIssued(ca) && leaf.verify(ca.publicKey) && valid(leaf, now) && valid(ca, now);
    return ok ? { result: 'allow' } : { result: 'deny' };
  });
} else {
  throw new Error(`unknown mode ${mode}`);
}

const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.send?.({ ready: true, address });
const stop = () => void app.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('disconnect', stop);
