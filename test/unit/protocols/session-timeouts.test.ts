import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { ServerConfig } from '../../../src/config/servers.ts';
import { silentLogger } from '../../../src/log.ts';
import { Limits } from '../../../src/net/limits.ts';
import type { Line } from '../../../src/net/line-buffer.ts';
import { HostResolver } from '../../../src/net/resolve.ts';
import { createUpstreamTlsContext } from '../../../src/net/upstream.ts';
import { ProxySession, type UpstreamLogin } from '../../../src/protocols/proxy-session.ts';
import type { TokenService } from '../../../src/tokens/token-service.ts';

/**
 * The session's clock, with the timers mocked so hours pass in an instant: the idle limit before login, no
 * limit at all once relaying (IMAP IDLE can be silent for an hour), none while a person authorises, and the
 * goodbye at shutdown. The protocol is a minimal line protocol of the test's own over plain TCP loopback
 * sockets; what is under test is ProxySession itself.
 */
class ProbeSession extends ProxySession {
  private buffered = '';
  receivedBytes = 0;

  protected receive(chunk: Buffer): void {
    this.receivedBytes += chunk.length;
    this.buffered += chunk.toString('latin1');
    const match = /^(\S+) LOGIN (\S+) (\S+)\r\n/.exec(this.buffered);
    if (!match) return;
    this.buffered = '';
    const [, tag, user = '', password = ''] = match;
    this.holdClient();
    void this.login(user, password).then((result) => {
      this.sendLine(`${tag} OK ${result.reply}`);
      this.relay();
    });
  }

  protected async greet(): Promise<string> {
    const greeting = await this.server().exchange(undefined, (line) => line);
    return greeting.raw.toString('latin1');
  }

  protected onServerLine(line: Line): void {
    this.send(line.raw);
  }

  protected async loginUpstream(): Promise<UpstreamLogin> {
    return { accepted: true, reason: '', mechanism: 'XOAUTH2', reply: 'logged in' };
  }

  protected unavailableReply(reason: string): string {
    return `* BYE [UNAVAILABLE] ${reason}\r\n`;
  }

  protected shutdownReply(): string {
    return '* BYE shutting down\r\n';
  }

  protected unhandledClientBytes(): Buffer {
    return Buffer.alloc(0);
  }

  get currentState(): string {
    return this.state;
  }
}

/** A peer socket that collects what it receives. */
class Peer {
  text = '';
  closed = false;
  constructor(readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (data: string) => {
      this.text += data;
    });
    socket.on('close', () => {
      this.closed = true;
    });
    socket.on('error', () => undefined);
  }
}

let upstreamServer: net.Server;
let upstreamPort: number;
const upstreams: Peer[] = [];
let proxyServer: net.Server;
let proxyPort: number;
let sessions: ProbeSession[] = [];
let authorisation: { release: () => void; wait: Promise<void> } | undefined;

const tokens = {
  accessToken: async () => {
    await authorisation?.wait;
    return { account: {}, accessToken: 'token', fromCache: false };
  },
} as unknown as TokenService;

const server: ServerConfig = {
  section: 'IMAP-1',
  protocol: 'IMAP',
  localPort: 1,
  localAddress: undefined,
  serverAddress: '127.0.0.1',
  serverPort: 0,
  // The probe reads the greeting in clear and never asks for STARTTLS: plain TCP both ways.
  serverStartTls: true,
  localStartTls: false,
  localCertificatePath: undefined,
  localKeyPath: undefined,
};

/** Waits (in real time: sockets are not mocked) until `condition` holds. */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let turn = 0; turn < 5000; turn += 1) {
    if (condition()) return;
    await nextTurn();
  }
  assert.fail(`gave up waiting for ${what}`);
}

async function connect(t: TestContext): Promise<{ client: Peer; upstream: Peer; session: ProbeSession }> {
  const before = upstreams.length;
  const socket = net.connect({ host: '127.0.0.1', port: proxyPort });
  await once(socket, 'connect');
  const client = new Peer(socket);
  t.after(() => socket.destroy());
  await until(() => upstreams.length > before, 'the upstream connection');
  const upstream = upstreams[before] as Peer;
  upstream.socket.write('* OK probe server ready\r\n');
  await until(() => client.text.includes('* OK probe'), 'the greeting');
  const session = sessions[sessions.length - 1] as ProbeSession;
  return { client, upstream, session };
}

async function logIn(client: Peer): Promise<void> {
  client.socket.write('a1 LOGIN alice secret\r\n');
  await until(() => client.text.includes('a1 OK'), 'the login');
}

describe('session timeouts', () => {
  before(async () => {
    upstreamServer = net.createServer((socket) => upstreams.push(new Peer(socket)));
    await new Promise<void>((resolve) => upstreamServer.listen(0, '127.0.0.1', resolve));
    upstreamPort = (upstreamServer.address() as net.AddressInfo).port;
    proxyServer = net.createServer((socket) => {
      const session = new ProbeSession(socket, {
        server: { ...server, serverPort: upstreamPort },
        tokens,
        resolver: new HostResolver({ logger: silentLogger() }),
        upstreamTls: createUpstreamTlsContext(),
        logger: silentLogger(),
        localTls: undefined,
      });
      sessions.push(session);
      void session.start();
    });
    await new Promise<void>((resolve) => proxyServer.listen(0, '127.0.0.1', resolve));
    proxyPort = (proxyServer.address() as net.AddressInfo).port;
  });

  after(async () => {
    for (const peer of upstreams) peer.socket.destroy();
    upstreamServer.close();
    proxyServer.close();
    sessions = [];
  });

  it('closes a client that stays silent before login, with the protocol goodbye, at the idle limit', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { client } = await connect(t);
    t.mock.timers.tick(Limits.preAuthIdleMs - 1);
    await nextTurn();
    assert.equal(client.closed, false, 'not before the limit');
    t.mock.timers.tick(1);
    await until(() => client.closed, 'the connection to close');
    assert.match(client.text, /\* BYE \[UNAVAILABLE\] idle for too long before login\r\n$/);
  });

  it('restarts the idle limit on every byte the client sends', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { client, upstream, session } = await connect(t);
    t.mock.timers.tick(Limits.preAuthIdleMs - 1000);
    client.socket.write('x');
    await until(() => session.receivedBytes === 1, 'the byte at the session');
    t.mock.timers.tick(Limits.preAuthIdleMs - 1000);
    await nextTurn();
    assert.equal(client.closed, false);
    assert.equal(upstream.closed, false);
  });

  it('never times out a relayed session: a day of silence, then both directions still flow (IMAP IDLE)', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { client, upstream, session } = await connect(t);
    await logIn(client);
    assert.equal(session.currentState, 'relaying');
    for (let hour = 0; hour < 24; hour += 1) {
      t.mock.timers.tick(60 * 60 * 1000);
      await nextTurn();
    }
    assert.equal(client.closed, false);
    assert.equal(upstream.closed, false);
    client.socket.write('a2 IDLE\r\n');
    await until(() => upstream.text.includes('a2 IDLE\r\n'), 'the command upstream');
    upstream.socket.write('* 3 EXISTS\r\n');
    await until(() => client.text.includes('* 3 EXISTS\r\n'), 'the server push at the client');
    assert.doesNotMatch(client.text, /BYE/);
  });

  it('does not time out a client waiting for a person to authorise its account', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let release = () => {};
    authorisation = { release: () => release(), wait: new Promise<void>((resolve) => (release = resolve)) };
    t.after(() => {
      authorisation = undefined;
    });
    const { client } = await connect(t);
    client.socket.write('a1 LOGIN alice secret\r\n');
    await nextTurn();
    t.mock.timers.tick(Limits.preAuthIdleMs * 3);
    await nextTurn();
    assert.equal(client.closed, false);
    authorisation.release();
    await until(() => client.text.includes('a1 OK'), 'the login');
  });

  it('says goodbye at shutdown to a client still logging in, and ends a relayed session without a word', async (t) => {
    const first = await connect(t);
    first.session.shutdown();
    await until(() => first.client.closed, 'the first connection to close');
    assert.match(first.client.text, /\* BYE shutting down\r\n$/);

    const second = await connect(t);
    await logIn(second.client);
    second.session.shutdown();
    await until(() => second.client.closed && second.upstream.closed, 'both sides to close');
    assert.doesNotMatch(second.client.text, /BYE/);
  });
});
