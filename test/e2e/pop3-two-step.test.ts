import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { python } from '../testbed/clients.ts';
import { serverSection } from '../testbed/config-sections.ts';
import {
  type MailbridgeProcess,
  startAuthorisingMailbridge,
  stopMailbridgeAndBed,
} from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';
import { type ScriptedServer, startScriptedServer } from '../testbed/scripted-server.ts';

/**
 * POP3 against a server that, like Microsoft's, takes AUTH XOAUTH2 only in two steps: the mechanism alone,
 * then the response after "+ "; an initial response on the AUTH line is a protocol error. Dovecot accepts both
 * forms, so a scripted server plays Microsoft here, and records every line mailbridge sends it.
 */
const ALICE = 'alice@example.test';
const PASSWORD = 'correct horse';
// biome-ignore lint/suspicious/noControlCharactersInRegex: XOAUTH2 separates its fields with 0x01
const XOAUTH2_RESPONSE = /^user=alice@example\.test\x01auth=Bearer at_[\w-]+\x01\x01$/;

/** Outlook's POP3, as far as a login and STAT go. */
function microsoftPop3(): (line: string, send: (text: string) => void) => void {
  const stateOf = new WeakMap<(text: string) => void, 'start' | 'awaiting-response' | 'authenticated'>();
  return (line, send) => {
    const state = stateOf.get(send) ?? 'start';
    if (state === 'awaiting-response') {
      const decoded = Buffer.from(line, 'base64').toString('utf8');
      const valid = XOAUTH2_RESPONSE.test(decoded);
      stateOf.set(send, valid ? 'authenticated' : 'start');
      send(valid ? '+OK User successfully authenticated.' : '-ERR Authentication failure: bad token.');
      return;
    }
    const command = line.toUpperCase();
    if (command === 'CAPA') send('+OK\r\nTOP\r\nUIDL\r\nSASL PLAIN XOAUTH2\r\nUSER\r\n.');
    else if (command === 'AUTH XOAUTH2') {
      stateOf.set(send, 'awaiting-response');
      send('+ ');
    } else if (command.startsWith('AUTH ')) send('-ERR Protocol error. Connection is closed. 0');
    else if (command === 'STAT' && state === 'authenticated') send('+OK 1 42');
    else if (command === 'QUIT') send('+OK Microsoft Exchange Server POP3 server signing off.');
    else send('-ERR Command is not valid in this state.');
  };
}

describe('POP3 upstream login in two steps, as Microsoft requires', () => {
  let bed: Testbed;
  let server: ScriptedServer;
  let mailbridge: MailbridgeProcess;
  let port: number;

  before(async () => {
    bed = await startTestbed();
    server = await startScriptedServer({
      certs: bed.certs,
      greeting: '+OK The Microsoft Exchange POP3 service is ready.',
      respond: microsoftPop3(),
    });
    [port] = (await findFreePorts(1)) as [number];
    const configPath = join(bed.dir, 'emailproxy.config');
    await writeFile(
      configPath,
      [
        serverSection({
          protocol: 'POP',
          localPort: port,
          serverAddress: server.host,
          serverPort: server.port,
          localAddress: '127.0.0.1',
        }),
        bed.accountSection(ALICE),
      ].join('\n'),
    );
    mailbridge = await startAuthorisingMailbridge(bed, configPath);
  });

  after(async () => {
    await server?.close();
    await stopMailbridgeAndBed(mailbridge, bed);
  });

  it('sends AUTH XOAUTH2 alone, then the response after "+ ", and the client logs in with USER/PASS', async () => {
    const script = `
import poplib, os
p = poplib.POP3('127.0.0.1', int(os.environ['PORT']), timeout=30)
p.user(os.environ['USER_NAME'])
print(p.pass_(os.environ['PASSWORD']).decode())
print(p.stat())
p.quit()
`;
    const result = await python(script, { PORT: String(port), USER_NAME: ALICE, PASSWORD });
    assert.equal(result.code, 0, `${result.stderr}\nmailbridge log:\n${mailbridge.stderr()}`);
    assert.equal(result.stdout.toString(), '+OK User successfully authenticated.\n(1, 42)\n');

    const auth = server.received.indexOf('AUTH XOAUTH2');
    assert.notEqual(auth, -1, `no two-step AUTH among: ${server.received.join(' | ')}`);
    assert.match(Buffer.from(server.received[auth + 1] ?? '', 'base64').toString('utf8'), XOAUTH2_RESPONSE);
    assert.ok(
      !server.received.some((line) => /^AUTH \S+ \S/i.test(line)),
      'no AUTH line carried an initial response',
    );
  });
});
