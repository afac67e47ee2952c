import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { silentLogger } from '../../../src/log.ts';
import { HostResolver } from '../../../src/net/resolve.ts';
import { connectTcp } from '../../../src/net/upstream.ts';

/** A loopback port nothing listens on: bound, noted, released. */
async function closedPort(host: string): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// Several addresses failing at once (Happy Eyeballs) need names with several addresses: see
// test/e2e/happy-eyeballs.test.ts, which makes them in a private /etc/hosts.
describe('connectTcp errors', () => {
  const resolver = new HostResolver({ logger: silentLogger() });

  it('names the server and what to check when its one address refuses', async () => {
    const port = await closedPort('127.0.0.1');
    await assert.rejects(connectTcp({ host: '127.0.0.1', port }, { resolver }), {
      code: 'UPSTREAM_CONNECT',
      message: `cannot reach 127.0.0.1:${port}: connection refused - check server_port and that the server is up`,
    });
  });
});
