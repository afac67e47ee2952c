import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import tls from 'node:tls';

/**
 * A tiny IMAP server for the idle-sessions measurement, run as its own process (its sockets count against its
 * own descriptor limit, and its memory is not mailbridge's). It speaks implicit TLS with the test bed's
 * certificate, as mailbridge always uses TLS upstream, accepts AUTHENTICATE XOAUTH2 with any token, and then
 * idles: Dovecot would need a process per session and hit its own limits long before 10,000.
 *
 *   node --import tsx bench/proxy/fake-imap-server.ts <cert.pem> <key.pem>
 *
 * Prints `listening <port>` on stdout; answers `count` on stdin with `count <authenticated sessions open>`.
 */
const CAPABILITIES = 'IMAP4rev1 SASL-IR AUTH=XOAUTH2';
const MAX_LINE = 16 * 1024;

const [certPath, keyPath] = process.argv.slice(2);
if (!certPath || !keyPath) {
  process.stderr.write('usage: fake-imap-server.ts <cert.pem> <key.pem>\n');
  process.exit(2);
}

let authenticated = 0;
let open = 0;

const server = tls.createServer(
  { cert: readFileSync(certPath), key: readFileSync(keyPath), minVersion: 'TLSv1.2' },
  (socket) => {
    open += 1;
    let buffered = '';
    let loggedIn = false;
    let awaitingResponse: string | undefined;
    socket.setEncoding('latin1');
    socket.on('error', () => undefined);
    socket.on('close', () => {
      open -= 1;
      if (loggedIn) authenticated -= 1;
    });
    const login = (tag: string) => {
      if (!loggedIn) authenticated += 1;
      loggedIn = true;
      socket.write(`${tag} OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n`);
    };
    const command = (line: string) => {
      if (awaitingResponse !== undefined) {
        const tag = awaitingResponse;
        awaitingResponse = undefined;
        login(tag);
        return;
      }
      const [tag = '*', verb = '', ...rest] = line.split(' ');
      switch (verb.toUpperCase()) {
        case 'CAPABILITY':
          socket.write(`* CAPABILITY ${CAPABILITIES}\r\n${tag} OK done\r\n`);
          return;
        case 'AUTHENTICATE':
          if (rest.length > 1) login(tag);
          else {
            awaitingResponse = tag;
            socket.write('+ \r\n');
          }
          return;
        case 'NOOP':
          socket.write(`${tag} OK NOOP done\r\n`);
          return;
        case 'LOGOUT':
          socket.end(`* BYE fake logging out\r\n${tag} OK LOGOUT done\r\n`);
          return;
        default:
          socket.write(`${tag} BAD unknown command\r\n`);
      }
    };
    socket.on('data', (text: string) => {
      buffered += text;
      let end = buffered.indexOf('\n');
      while (end !== -1) {
        command(buffered.slice(0, end).replace(/\r$/, ''));
        buffered = buffered.slice(end + 1);
        end = buffered.indexOf('\n');
      }
      if (buffered.length > MAX_LINE) socket.destroy();
    });
    socket.write(`* OK [CAPABILITY ${CAPABILITIES}] fake IMAP ready\r\n`);
  },
);
server.on('tlsClientError', () => undefined);
server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  process.stdout.write(`listening ${address.port}\n`);
});

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'count') process.stdout.write(`count ${authenticated} ${open}\n`);
});
// The benchmark closing our stdin (or dying) ends us: never left behind holding thousands of sockets.
process.stdin.on('end', () => process.exit(0));
