import { readFileSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import { createInterface } from 'node:readline';
import tls from 'node:tls';

/**
 * A mail server that says exactly what a test scripts, over implicit TLS on 127.0.0.1: for behaviour no real
 * peer here shows (Microsoft accepting a login and then refusing every command, SMTP AUTH disabled for the
 * tenant, a server without OAuth). `respond` gets each line the client sends and answers with `send`.
 */
export interface ScriptedServer {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** Every line received from clients, in order. */
  readonly received: string[];
  close(): Promise<void>;
}

export interface ScriptedServerOptions {
  certs: { certPath: string; keyPath: string };
  /** The first line(s) the server sends, without the final CRLF. */
  greeting: string;
  respond: (line: string, send: (text: string) => void) => void;
}

export async function startScriptedServer(options: ScriptedServerOptions): Promise<ScriptedServer> {
  const sockets = new Set<Socket>();
  const received: string[] = [];
  const server = tls.createServer(
    { cert: readFileSync(options.certs.certPath), key: readFileSync(options.certs.keyPath) },
    (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      const send = (text: string) => {
        if (!socket.destroyed) socket.write(`${text}\r\n`);
      };
      send(options.greeting);
      createInterface({ input: socket, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
        received.push(line);
        options.respond(line, send);
      });
    },
  );
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    host: '127.0.0.1',
    port: (server.address() as AddressInfo).port,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
