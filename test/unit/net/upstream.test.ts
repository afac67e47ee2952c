import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { silentLogger } from '../../../src/log.ts';
import { HostResolver } from '../../../src/net/resolve.ts';
import { connectTcp, describeSocketError } from '../../../src/net/upstream.ts';

/** A loopback port nothing listens on: bound, noted, released. */
async function closedPort(host: string): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

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

/** One address's failure, shaped as Node reports it inside the AggregateError of a Happy Eyeballs connect. */
function attempt(code: string, address: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`connect ${code} ${address}:993`), { code, address, port: 993 });
}

// The real several-address failures, through real sockets, are in test/e2e/happy-eyeballs.test.ts.
describe('describeSocketError for several addresses', () => {
  it('names each address with its outcome, and asks about the network when none answered', () => {
    const error = new AggregateError([
      attempt('ETIMEDOUT', '2001:db8::2'),
      attempt('EHOSTUNREACH', '192.0.2.1'),
    ]);
    assert.equal(
      describeSocketError(error as unknown as NodeJS.ErrnoException),
      'no address answered: [2001:db8::2] no answer (ETIMEDOUT), 192.0.2.1 unreachable (EHOSTUNREACH) - is there a network connection?',
    );
  });

  it('points at the port and the server once any address refused, as the network then works', () => {
    const error = new AggregateError([
      attempt('EHOSTUNREACH', '2001:db8::2'),
      attempt('ECONNREFUSED', '192.0.2.1'),
    ]);
    assert.equal(
      describeSocketError(error as unknown as NodeJS.ErrnoException),
      'no address answered: [2001:db8::2] unreachable (EHOSTUNREACH), 192.0.2.1 refused (ECONNREFUSED) - check server_port and that the server is up',
    );
  });
});
