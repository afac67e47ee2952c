import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { fieldValues, insertField, parseHeader } from '../../../src/thread/message.ts';

const bytes = (text: string) => Buffer.from(text, 'latin1');

function withField(text: string | Buffer, field = 'X-Muted: true'): string {
  const message = typeof text === 'string' ? bytes(text) : text;
  return insertField(message, parseHeader(message), field).toString('latin1');
}

describe('parseHeader', () => {
  it('reads the fields of the header block and stops at the empty line', () => {
    const header = parseHeader(bytes('From: a@example.com\nSubject: hi\n\nNot-A-Field: body\n'));
    assert.deepEqual(header.fields, [
      { name: 'From', value: ' a@example.com' },
      { name: 'Subject', value: ' hi' },
    ]);
    assert.equal(header.insertAt, 'From: a@example.com\nSubject: hi\n'.length);
    assert.equal(header.lineEnding, '\n');
  });

  it('unfolds folded fields by removing the line breaks before whitespace (RFC 5322 §2.2.3)', () => {
    const header = parseHeader(
      bytes('References: <a@x>\r\n\t<b@x>\r\n  <c@x>\r\nSubject: one\r\n two\r\n\r\nbody\r\n'),
    );
    assert.deepEqual(fieldValues(header, 'references'), [' <a@x>\t<b@x>  <c@x>']);
    assert.deepEqual(fieldValues(header, 'SUBJECT'), [' one two']);
    assert.equal(header.lineEnding, '\r\n');
  });

  it('keeps every copy of a duplicated field, in order', () => {
    const header = parseHeader(bytes('Message-ID: <1@x>\nReferences: <a@x>\nmessage-id: <2@x>\n\n'));
    assert.deepEqual(fieldValues(header, 'Message-ID'), [' <1@x>', ' <2@x>']);
  });

  it('accepts the mbox postmark line and whitespace before the colon', () => {
    const header = parseHeader(bytes('From alice@example.com Sat Nov 29 10:00:00 2026\nSubject : x\n\n'));
    assert.deepEqual(header.fields, [{ name: 'Subject', value: ' x' }]);
  });

  it('skips a malformed line inside the block, and its continuation, but keeps reading to the empty line', () => {
    const header = parseHeader(
      bytes('Subject: x\nthis is not a field\n continued\nMessage-ID: <1@x>\n\nbody'),
    );
    assert.deepEqual(
      header.fields.map((field) => field.name),
      ['Subject', 'Message-ID'],
    );
    assert.equal(header.insertAt, 'Subject: x\nthis is not a field\n continued\nMessage-ID: <1@x>\n'.length);
  });

  it('reads a very long header line (1 MiB of References) whole', () => {
    const ids = Array.from({ length: 40_000 }, (_, i) => `<${i}.abcdefgh@example.com>`).join(' ');
    const header = parseHeader(bytes(`Subject: x\nReferences: ${ids}\n\nbody\n`));
    assert.equal(fieldValues(header, 'References')[0]?.length, ids.length + 1);
  });

  it('finds no header block in empty input, a body without headers, or garbage', () => {
    for (const input of [
      bytes(''),
      bytes('\n'),
      bytes('\r\n\r\nbody'),
      bytes('Hello, this is just text.\nSubject: not a header now\n'),
      bytes(' starts with a space: x\n'),
      bytes('\u00ff\u00fe\u0000binary'),
      bytes(': no name\n'),
    ]) {
      const header = parseHeader(input);
      assert.deepEqual(header.fields, [], JSON.stringify(input.toString('latin1')));
      assert.equal(header.insertAt, undefined);
      assert.equal(insertField(input, header, 'X-Muted: true'), input);
    }
  });
});

describe('insertField', () => {
  it('adds the field as the last header line, before the empty line, with LF', () => {
    assert.equal(withField('A: 1\nB: 2\n\nbody\n'), 'A: 1\nB: 2\nX-Muted: true\n\nbody\n');
  });

  it("uses CRLF when the message's header lines end in CRLF", () => {
    assert.equal(withField('A: 1\r\nB: 2\r\n\r\nbody\r\n'), 'A: 1\r\nB: 2\r\nX-Muted: true\r\n\r\nbody\r\n');
  });

  it('adds after a folded last field, not inside it', () => {
    assert.equal(withField('A: 1\nB: 2\n 3\n\nbody'), 'A: 1\nB: 2\n 3\nX-Muted: true\n\nbody');
  });

  it('keeps a message without a final newline without one, in the body or in the header', () => {
    assert.equal(withField('A: 1\n\nbody'), 'A: 1\nX-Muted: true\n\nbody');
    assert.equal(withField('A: 1\nB: 2'), 'A: 1\nB: 2\nX-Muted: true');
    assert.equal(withField('A: 1\r\nB: 2'), 'A: 1\r\nB: 2\r\nX-Muted: true');
    assert.equal(withField('A: 1'), 'A: 1\nX-Muted: true');
  });

  it('adds to a header-only message (procmail :0 fh hands over the header and its empty line)', () => {
    assert.equal(withField('A: 1\n\n'), 'A: 1\nX-Muted: true\n\n');
    assert.equal(withField('A: 1\n'), 'A: 1\nX-Muted: true\n');
  });

  it('changes no other byte: 8-bit header and body, bare CR, NUL, invalid UTF-8', () => {
    const head = Buffer.from('Subject: caf\u00e9 \u00ff\rx\nX-Raw: ', 'latin1');
    const tail = Buffer.concat([bytes('\n\n'), randomBytes(4096), bytes('\r\n.\r\n')]);
    const message = Buffer.concat([head, Buffer.from([0xc3, 0x28, 0x00, 0xa0]), tail]);
    const out = insertField(message, parseHeader(message), 'X-Muted: true');
    const at = message.length - tail.length + 1;
    assert.deepEqual(out.subarray(0, at), message.subarray(0, at));
    assert.equal(out.subarray(at, at + 14).toString('latin1'), 'X-Muted: true\n');
    assert.deepEqual(out.subarray(at + 14), message.subarray(at));
  });

  it('writes a field with UTF-8 text as UTF-8', () => {
    assert.deepEqual(
      insertField(bytes('A: 1\n\n'), parseHeader(bytes('A: 1\n\n')), 'X-Note: tués'),
      Buffer.from('A: 1\nX-Note: tués\n\n', 'utf8'),
    );
  });
});
