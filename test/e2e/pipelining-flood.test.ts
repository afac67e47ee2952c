import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { curl } from '../testbed/clients.ts';
import { sectionsForEveryProtocol } from '../testbed/config-sections.ts';
import {
  type MailbridgeProcess,
  startAuthorisingMailbridge,
  stopMailbridgeAndBed,
} from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';

/**
 * A client that pipelines commands before login far faster than the server answers them (a flood, or a
 * broken client in a loop) must not make mailbridge buffer without limit: it reads only as fast as the
 * commands are answered, and TCP flow control holds the rest in the client's lap. 64 MiB of commands are
 * offered per protocol; what mailbridge takes from the client in that time must stay within what the
 * kernel's socket buffers hold (before the fix, POP3 and SMTP took all 64 MiB and grew by 145 and 73 MiB).
 * Resident memory is reported too, but not asserted: the garbage of many small commands makes it noisy.
 */
const FLOOD_BYTES = 64 * 1024 * 1024;
/** The flood is offered for this long; unbounded buffering would have taken it all in by then. */
const FLOOD_MS = 3000;
/** Far below the flood, above what the kernel's socket buffers on both sides hold (about 4 MiB here). */
const MAX_TAKEN_BYTES = 16 * 1024 * 1024;
const ALICE = 'alice@example.test';
const PASSWORD = 'correct horse';

let bed: Testbed;
let mailbridge: MailbridgeProcess;
let ports: { imap: number; pop: number; smtp: number };

function residentBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) * 1024;
}

/** Offers FLOOD_BYTES of `line` repeated, for FLOOD_MS, and returns the peak growth of mailbridge's memory. */
async function flood(
  port: number,
  greeting: RegExp,
  line: string,
): Promise<{ growth: number; accepted: number }> {
  const pid = mailbridge.child.pid as number;
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  let text = '';
  socket.setEncoding('latin1');
  await new Promise<void>((resolve) => {
    const onData = (data: string) => {
      text += data;
      if (greeting.test(text)) {
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
  });
  socket.on('data', () => undefined);
  const baseline = residentBytes(pid);
  const unit = Buffer.from(line.repeat(Math.ceil(65_536 / line.length)));
  for (let sent = 0; sent < FLOOD_BYTES; sent += unit.length) socket.write(unit);
  let peak = baseline;
  const end = Date.now() + FLOOD_MS;
  while (Date.now() < end) {
    peak = Math.max(peak, residentBytes(pid));
    await sleep(50);
  }
  const accepted = FLOOD_BYTES - socket.writableLength;
  socket.destroy();
  return { growth: peak - baseline, accepted };
}

describe('a pipelined flood before login', () => {
  before(async () => {
    bed = await startTestbed({ smtpSink: true });
    const [imap, pop, smtp] = (await findFreePorts(3)) as [number, number, number];
    ports = { imap, pop, smtp };
    const configPath = join(bed.dir, 'emailproxy.config');
    await writeFile(
      configPath,
      [...sectionsForEveryProtocol(ports, bed.dovecot.ports), bed.accountSection(ALICE)].join('\n'),
    );
    mailbridge = await startAuthorisingMailbridge(bed, configPath);
  });

  after(async () => {
    await stopMailbridgeAndBed(mailbridge, bed);
  });

  for (const [name, key, greeting, line] of [
    ['POP3', 'pop', /^\+OK[^\r\n]*\r\n/, 'CAPA\r\n'],
    ['SMTP', 'smtp', /^220 [^\r\n]*\r\n/, 'NOOP\r\n'],
    ['IMAP', 'imap', /^\* OK [^\r\n]*\r\n/, 'a NOOP\r\n'],
  ] as const) {
    it(`${name}: is read only as fast as it is answered, so memory stays bounded`, async (t) => {
      const { growth, accepted } = await flood(ports[key], greeting, line);
      t.diagnostic(
        `${name}: ${(accepted / 1048576).toFixed(1)} MiB taken from the client in ${FLOOD_MS} ms, memory grew ${(growth / 1048576).toFixed(1)} MiB`,
      );
      assert.ok(accepted < MAX_TAKEN_BYTES, `mailbridge took ${(accepted / 1048576).toFixed(1)} MiB`);
    });
  }

  it('still serves afterwards', async () => {
    bed.dovecot.seedMessage(ALICE, '1.one', 'Subject: one\r\n\r\nhello\r\n');
    const result = await curl([
      '--user',
      `${ALICE}:${PASSWORD}`,
      `imap://127.0.0.1:${ports.imap}/INBOX/;UID=1`,
    ]);
    assert.equal(result.code, 0, result.stderr);
  });
});
