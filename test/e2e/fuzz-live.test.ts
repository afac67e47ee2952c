import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { curl } from '../testbed/clients.ts';
import { sectionsForEveryProtocol } from '../testbed/config-sections.ts';
import { type MailbridgeProcess, startMailbridge, stopMailbridgeAndBed } from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';
import { RawClient } from '../testbed/raw-client.ts';
import {
  chunked,
  type GeneratedInput,
  imapInput,
  pop3Input,
  Rng,
  smtpInput,
} from '../unit/protocols/fuzz-inputs.ts';

/**
 * The generated inputs of the in-process fuzz run (test/unit/protocols/fuzz.test.ts), sent to the real
 * program in front of Dovecot: several connections per protocol at once, each input cut at random places and
 * pipelined without waiting for replies; a connection mailbridge (or Dovecot) closes is replaced. Afterwards
 * the process must be alive, its log free of crashes, and serving real logins on every protocol.
 */
const INPUTS_PER_PROTOCOL = Number(process.env.LIVE_FUZZ_INPUTS ?? 2000);
const CONNECTIONS = 8;
const SEED = Number(process.env.FUZZ_SEED ?? 20_261_129);
const ALICE = 'alice@example.test';
const PASSWORD = 'correct horse';
const MESSAGE = Buffer.from('Subject: one\r\n\r\nhello\r\n');
/** After its last input a connection waits for the replies to stop (or the close) before it ends. */
const QUIET_MS = 300;
const MAX_DRAIN_MS = 15_000;

let bed: Testbed;
let mailbridge: MailbridgeProcess;
let ports: { imap: number; pop: number; smtp: number };

interface Totals {
  inputs: number;
  bytes: number;
  connections: number;
  closedByServer: number;
}

/** One connection's worth of inputs, until they run out or the server closes it. */
function session(
  port: number,
  inputs: () => GeneratedInput | undefined,
  rng: Rng,
  totals: Totals,
): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    totals.connections += 1;
    let closed = false;
    let lastData = Date.now();
    socket.on('data', () => {
      lastData = Date.now();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closed = true;
      resolve();
    });
    socket.once('connect', async () => {
      const perConnection = 20 + rng.int(60);
      for (let i = 0; i < perConnection && !closed; i += 1) {
        const input = inputs();
        if (!input) break;
        totals.inputs += 1;
        totals.bytes += input.bytes.length;
        for (const piece of chunked(rng, input.bytes)) {
          if (closed) break;
          socket.write(piece);
        }
        await nextTurn();
      }
      // Let mailbridge work through what was pipelined: ending now would discard it unread.
      const deadline = Date.now() + MAX_DRAIN_MS;
      while (!closed && Date.now() < deadline && Date.now() - lastData < QUIET_MS) await sleep(50);
      if (closed) totals.closedByServer += 1;
      else socket.end();
    });
  });
}

async function fuzzProtocol(
  port: number,
  generate: (rng: Rng, lineLimit: number) => GeneratedInput,
  seed: number,
): Promise<Totals> {
  const rng = new Rng(seed);
  const totals: Totals = { inputs: 0, bytes: 0, connections: 0, closedByServer: 0 };
  let remaining = INPUTS_PER_PROTOCOL;
  const next = () => {
    if (remaining <= 0) return undefined;
    remaining -= 1;
    return generate(rng, 64 * 1024);
  };
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (remaining > 0) await session(port, next, rng, totals);
    }),
  );
  return totals;
}

describe(`fuzzing the live process (${INPUTS_PER_PROTOCOL} inputs per protocol)`, () => {
  before(async () => {
    bed = await startTestbed({ smtpSink: true });
    bed.dovecot.seedMessage(ALICE, '1.one', MESSAGE);
    const [imap, pop, smtp] = (await findFreePorts(3)) as [number, number, number];
    ports = { imap, pop, smtp };
    const configPath = join(bed.dir, 'emailproxy.config');
    await writeFile(
      configPath,
      [...sectionsForEveryProtocol(ports, bed.dovecot.ports), bed.accountSection(ALICE)].join('\n'),
    );
    mailbridge = await startMailbridge({
      // --debug logs every command a session parses ("client: …"), which is how the run counts them.
      args: ['--no-gui', '--external-auth', '--debug', '--config-file', configPath],
      caCertPath: bed.certs.caCertPath,
      authorise: (url) => bed.oauth.authorize(url),
    });
    await mailbridge.waitForLog('mailbridge ready');
  });

  after(async () => {
    await stopMailbridgeAndBed(mailbridge, bed);
  });

  for (const [name, generate, offset] of [
    ['IMAP', imapInput, 1],
    ['POP3', pop3Input, 2],
    ['SMTP', smtpInput, 3],
  ] as const) {
    it(`${name}: stays up through the generated inputs`, async (t) => {
      const port = name === 'IMAP' ? ports.imap : name === 'POP3' ? ports.pop : ports.smtp;
      const section = `${name === 'POP3' ? 'POP' : name}-${port}`;
      const parsed = () =>
        (mailbridge.stderr().match(new RegExp(`\\[${section} \\d+\\] client: `, 'g')) ?? []).length;
      const before = parsed();
      const totals = await fuzzProtocol(port, generate, SEED + offset);
      t.diagnostic(
        `${name}: ${totals.inputs} inputs, ${totals.bytes} bytes, ${totals.connections} connections (${totals.closedByServer} closed by the server side); ${parsed() - before} commands parsed by mailbridge`,
      );
      assert.equal(totals.inputs, INPUTS_PER_PROTOCOL);
      assert.equal(mailbridge.child.exitCode, null, 'mailbridge is still running');
    });
  }

  it('is alive, crash-free in its log, and serves real logins on every protocol afterwards', async () => {
    assert.equal(mailbridge.child.exitCode, null);
    assert.doesNotMatch(
      mailbridge.stderr(),
      /FATAL|uncaught|unhandled|TypeError|RangeError|ReferenceError|\n\s+at /i,
    );
    const imap = await curl([
      '--user',
      `${ALICE}:${PASSWORD}`,
      `imap://127.0.0.1:${ports.imap}/INBOX/;UID=1`,
    ]);
    assert.equal(imap.code, 0, imap.stderr);
    assert.deepEqual(imap.stdout, MESSAGE);
    const pop = await curl(['--user', `${ALICE}:${PASSWORD}`, `pop3://127.0.0.1:${ports.pop}/1`]);
    assert.equal(pop.code, 0, pop.stderr);
    assert.deepEqual(pop.stdout, MESSAGE);
    const smtp = await RawClient.connect(ports.smtp);
    try {
      await smtp.waitFor(/^220 [^\r\n]*\r\n/);
      smtp.send('EHLO client.example.test\r\n');
      await smtp.waitFor(/250 [^\r\n]*\r\n$/);
      smtp.send(`AUTH PLAIN ${Buffer.from(`\0${ALICE}\0${PASSWORD}`).toString('base64')}\r\n`);
      await smtp.waitFor(/\r\n235 [^\r\n]*\r\n$/);
    } finally {
      smtp.close();
    }
  });
});
