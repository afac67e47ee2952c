// Proves the SMTP sink behind Dovecot's submission service: a message submitted to Dovecot with a bearer token
// (no mailbridge) arrives in the sink byte for byte, after the one Received field Dovecot adds.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { curl, TlsConversation } from '../testbed/clients.ts';
import { RawClient } from '../testbed/raw-client.ts';
import { type SmtpSink, splitReceivedHeader, startSmtpSink } from '../testbed/smtp-sink.ts';

const ALICE = 'alice@example.test';
const BOB = 'bob@example.test';
const CAROL = 'carol@example.test';

const MESSAGE = Buffer.from(
  [
    'From: Alice <alice@example.test>',
    'To: Bob <bob@example.test>',
    'Subject: sink smoke',
    'Message-ID: <sink-smoke-1@example.test>',
    '',
    'Hello Bob,',
    '.a line that starts with a dot',
    '..and one with two',
    '.',
    'the line above is a single dot; 8-bit: caf\xe9',
    '',
  ].join('\r\n'),
  'latin1',
);

describe('SMTP sink behind Dovecot submission', () => {
  let bed: Testbed & { sink: SmtpSink };
  let token: string;
  let messagePath: string;

  before(async () => {
    bed = await startTestbed({ smtpSink: true });
    token = bed.oauth.issueAccessToken(ALICE);
    messagePath = join(bed.dir, 'message.eml');
    await writeFile(messagePath, MESSAGE);
  });

  after(async () => {
    await bed?.stop();
  });

  function curlSubmit(url: string, recipients: string[], extra: string[] = []) {
    return curl([
      '--cacert',
      bed.certs.caCertPath,
      '--user',
      ALICE,
      '--oauth2-bearer',
      token,
      '--mail-from',
      ALICE,
      ...recipients.flatMap((rcpt) => ['--mail-rcpt', rcpt]),
      '--upload-file',
      messagePath,
      ...extra,
      url,
    ]);
  }

  it('receives what curl submits with STARTTLS and a bearer token, byte for byte after the Received field', async () => {
    bed.sink.clear();
    const result = await curlSubmit(
      `smtp://127.0.0.1:${bed.dovecot.ports.submission}`,
      [BOB],
      ['--ssl-reqd'],
    );
    assert.equal(result.code, 0, `${result.stderr}\n${bed.dovecot.logTail()}`);
    const [message] = await bed.sink.waitForMessages(1);
    assert.ok(message);
    assert.equal(message.from, ALICE);
    assert.deepEqual(message.to, [BOB]);
    const { received, rest } = splitReceivedHeader(message.data);
    assert.deepEqual(rest, MESSAGE);
    // curl's EHLO name is the last part of the upload file's name.
    assert.match(
      received,
      /^Received: from message\.eml \(\[127\.0\.0\.1\]\)\r\n\tby localhost with ESMTPSA\r\n\tid \S+\r\n\t\(envelope-from <alice@example\.test>\)\r\n\tfor <bob@example\.test>; [^\r\n]+\r\n$/,
    );
    assert.deepEqual(await readFile(message.path), message.data);
    assert.match(message.mailParameters, /^SIZE=\d+$/);
    // Dovecot relays with DATA: the sink offers no CHUNKING, so no BDAT is ever needed.
    assert.deepEqual(
      bed.sink.commands.map((line) => line.split(' ')[0]),
      ['EHLO', 'MAIL', 'RCPT', 'DATA', 'QUIT'],
    );
  });

  it('receives over implicit TLS (submissions) for several recipients; the Received field then names none', async () => {
    bed.sink.clear();
    const result = await curlSubmit(`smtps://localhost:${bed.dovecot.ports.submissions}`, [BOB, CAROL]);
    assert.equal(result.code, 0, result.stderr);
    const [message] = await bed.sink.waitForMessages(1);
    assert.ok(message);
    assert.deepEqual(message.to, [BOB, CAROL]);
    const { received, rest } = splitReceivedHeader(message.data);
    assert.deepEqual(rest, MESSAGE);
    assert.match(received, /\t\(envelope-from <alice@example\.test>\); [^\r\n]+\r\n$/);
    assert.doesNotMatch(received, /\tfor </);
  });

  it('passes dot lines, bare CR, NUL, 8-bit bytes and a 5000-byte line through, but turns a bare LF into CRLF', async () => {
    bed.sink.clear();
    const conversation = await TlsConversation.connect(bed.dovecot.ports.submissions, bed.certs.caCertPath);
    try {
      await conversation.waitFor(/^220 [^\r\n]*\r\n/);
      conversation.send('EHLO raw.client.test\r\n');
      await conversation.waitFor(/^250 [^\r\n]*\r\n/m);
      const initial = Buffer.from(`user=${ALICE}\x01auth=Bearer ${token}\x01\x01`).toString('base64');
      conversation.send(`AUTH XOAUTH2 ${initial}\r\n`);
      await conversation.waitFor(/^235 [^\r\n]*\r\n/m);
      conversation.send(`MAIL FROM:<${ALICE}>\r\nRCPT TO:<${BOB}>\r\nDATA\r\n`);
      await conversation.waitFor(/^354 [^\r\n]*\r\n/m);
      const body = `Subject: raw\r\n\r\n..dot\r\nbare\rCR and NUL\0 and caf\xe9\r\n${'x'.repeat(5000)}\r\n`;
      conversation.send(Buffer.from(`${body}bare LF\nend\r\n.\r\n`, 'latin1'));
      await bed.sink.waitForMessages(1);
    } finally {
      conversation.close();
    }
    const { rest } = splitReceivedHeader(bed.sink.messages[0]?.data ?? Buffer.alloc(0));
    const expected = `Subject: raw\r\n\r\n.dot\r\nbare\rCR and NUL\0 and caf\xe9\r\n${'x'.repeat(5000)}\r\n`;
    assert.equal(rest.toString('latin1'), `${expected}bare LF\r\nend\r\n`);
  });

  it('handles pipelined commands and data split at every awkward place (the sink alone)', async () => {
    bed.sink.clear();
    const client = await RawClient.connect(bed.sink.port);
    client.socket.setNoDelay(true);
    try {
      await client.waitFor(/^220 [^\r\n]*\r\n/);
      client.send('HELO a\r\nNOOP\r\nMAIL FROM:<x@example.test>\r\nRSET\r\nEHLO b\r\n');
      await client.waitFor(/250 ENHANCEDSTATUSCODES\r\n$/);
      assert.match(
        client.text(),
        /\r\n250 sink\.localhost\r\n250 2\.0\.0 Ok\r\n250 2\.1\.0 Ok\r\n250 2\.0\.0 Ok\r\n250-/,
      );
      client.send(
        'MAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<a@example.test>\r\nRCPT TO: <b@example.test>\r\nDATA\r\n',
      );
      await client.waitFor(/354 [^\r\n]*\r\n$/);
      // Pieces that end inside a CRLF, right after a line-initial dot, inside a stuffed ".." line, and inside the
      // terminating ".\r\n", whose last byte comes with the next command.
      const pieces = [
        'Subject: s\r\n\r',
        '\n.',
        '.one dot\r\n',
        '.',
        '.',
        '\r',
        '\nx\r',
        '\n.',
        '\r',
        '\nQUIT\r\n',
      ];
      for (const piece of pieces) {
        client.send(piece);
        await sleep(5);
      }
      await client.waitClosed();
    } finally {
      client.close();
    }
    const [message] = await bed.sink.waitForMessages(1);
    assert.ok(message);
    assert.equal(message.from, '');
    assert.deepEqual(message.to, ['a@example.test', 'b@example.test']);
    assert.equal(message.mailParameters, 'BODY=8BITMIME');
    assert.equal(message.data.toString('latin1'), 'Subject: s\r\n\r\n.one dot\r\n.\r\nx\r\n');
    assert.match(client.text(), /250 2\.0\.0 Stored as [^\r\n]+\r\n221 2\.0\.0 Bye\r\n$/);
  });

  it('stores nothing when a connection drops mid-DATA, and refuses what exceeds its size (the sink alone)', async () => {
    const small = await startSmtpSink({ dir: join(bed.dir, 'small-sink'), maxMessageBytes: 1000 });
    try {
      const dropped = await RawClient.connect(small.port);
      await dropped.waitFor(/^220 /);
      dropped.send('EHLO c\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n');
      await dropped.waitFor(/354 [^\r\n]*\r\n$/);
      dropped.send('Subject: half\r\n\r\nhalf a message');
      await sleep(50);
      dropped.socket.resetAndDestroy();

      const big = await RawClient.connect(small.port);
      await big.waitFor(/^220 /);
      big.send('EHLO c\r\nMAIL FROM:<a@example.test> SIZE=5000\r\n');
      await big.waitFor(/552 5\.3\.4 [^\r\n]*\r\n$/);
      big.send(`MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n`);
      await big.waitFor(/354 [^\r\n]*\r\n$/);
      big.send(`Subject: big\r\n\r\n${'y'.repeat(2000)}\r\n.\r\nQUIT\r\n`);
      await big.waitFor(/552 5\.3\.4 [^\r\n]*\r\n221 /);
      big.close();

      await sleep(100);
      assert.equal(small.messages.length, 0);
      assert.equal(small.abortedTransactions, 2);
    } finally {
      await small.close();
    }
  });
});
