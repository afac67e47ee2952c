import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { curl } from '../testbed/clients.ts';
import { serverSection } from '../testbed/config-sections.ts';
import {
  type MailbridgeProcess,
  startAuthorisingMailbridge,
  stopMailbridgeAndBed,
} from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';

/**
 * A burst of 500 clients connecting at the same instant (a mail client opening many folders, a cron job
 * fleet, a reconnect storm after a network blip) must all be served: each gets Dovecot's greeting through
 * mailbridge and a completed LOGOUT, none is refused, reset or left hanging. The original's listen backlog of
 * 5 left such clients hanging; mailbridge's is 511 (checked in signals.test.ts).
 */
const CLIENTS = 500;
/** Bounds the whole burst; no client may take this long (it would be hanging, not slow). */
const CLIENT_TIMEOUT_MS = 120_000;
const ALICE = 'alice@example.test';
const PASSWORD = 'correct horse';

let bed: Testbed;
let mailbridge: MailbridgeProcess;
let port: number;

type Outcome = { ok: true } | { ok: false; reason: string };

/** Connects, waits for the greeting, logs out, and waits for the tagged OK and the close. */
function client(): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let text = '';
    let done = false;
    const finish = (outcome: Outcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(
      () => finish({ ok: false, reason: `no answer in time; got ${JSON.stringify(text)}` }),
      CLIENT_TIMEOUT_MS,
    );
    socket.setEncoding('latin1');
    socket.on('data', (data: string) => {
      const before = text;
      text += data;
      if (!/\r\n/.test(before) && /^\* OK [^\r\n]*\r\n/.test(text)) socket.write('z1 LOGOUT\r\n');
      if (/\r\nz1 OK [^\r\n]*\r\n/.test(text)) finish({ ok: true });
      if (/^\* BYE \[UNAVAILABLE\]/.test(text)) finish({ ok: false, reason: text.trim() });
    });
    socket.on('error', (error) => finish({ ok: false, reason: error.message }));
    socket.on('close', () => finish({ ok: false, reason: `closed early after ${JSON.stringify(text)}` }));
  });
}

describe(`a burst of ${CLIENTS} connections`, () => {
  before(async () => {
    bed = await startTestbed();
    bed.dovecot.seedMessage(ALICE, '1.one', 'Subject: one\r\n\r\nhello\r\n');
    [port] = (await findFreePorts(1)) as [number];
    const configPath = join(bed.dir, 'emailproxy.config');
    await writeFile(
      configPath,
      [
        serverSection({
          protocol: 'IMAP',
          localPort: port,
          serverPort: bed.dovecot.ports.imaps,
          localAddress: '127.0.0.1',
        }),
        bed.accountSection(ALICE),
      ].join('\n'),
    );
    mailbridge = await startAuthorisingMailbridge(bed, configPath);
  });

  after(async () => {
    await stopMailbridgeAndBed(mailbridge, bed);
  });

  it('serves every one: greeting and LOGOUT through to Dovecot, nothing refused or hanging', async (t) => {
    const started = Date.now();
    const outcomes = await Promise.all(Array.from({ length: CLIENTS }, () => client()));
    const failures = outcomes.flatMap((outcome) => (outcome.ok ? [] : [outcome.reason]));
    t.diagnostic(`${CLIENTS - failures.length}/${CLIENTS} served in ${Date.now() - started} ms`);
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} of ${CLIENTS} clients were not served`);
    // And the daemon is fine afterwards: a real login and fetch.
    const result = await curl(['--user', `${ALICE}:${PASSWORD}`, `imap://127.0.0.1:${port}/INBOX/;UID=1`]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(mailbridge.child.exitCode, null);
  });
});
