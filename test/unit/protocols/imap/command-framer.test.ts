import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LineTooLongError } from '../../../../src/net/line-buffer.ts';
import {
  type ClientFrame,
  CommandFramer,
  LiteralTooLargeError,
} from '../../../../src/protocols/imap/command-framer.ts';

function frames(framer: CommandFramer): ClientFrame[] {
  const out: ClientFrame[] = [];
  for (let frame = framer.next(); frame; frame = framer.next()) out.push(frame);
  return out;
}

describe('IMAP client framing before login', () => {
  it('splits lines and keeps each terminator byte-exact', () => {
    const framer = new CommandFramer(1024, 1024);
    framer.push(Buffer.from('a1 CAPABILITY\r\na2 NOOP\nrest'));
    const [first, second, ...others] = frames(framer);
    assert.equal(first?.kind === 'line' && first.raw.toString(), 'a1 CAPABILITY\r\n');
    assert.equal(second?.kind === 'line' && second.text, 'a2 NOOP');
    assert.equal(others.length, 0);
    assert.equal(framer.drain().toString(), 'rest');
  });

  it('treats the bytes after {n} as literal data, even when they hold CRLF', () => {
    const framer = new CommandFramer(1024, 1024);
    framer.push(Buffer.from('a1 LOGIN {4+}\r\na\r\nb {2}\r\n'));
    framer.push(Buffer.from('pw\r\n'));
    const kinds = frames(framer).map((f) =>
      f.kind === 'line' ? `line:${f.text}` : `literal:${f.data.toString()}`,
    );
    assert.deepEqual(kinds, ['line:a1 LOGIN {4+}', 'literal:a\r\nb', 'line: {2}', 'literal:pw', 'line:']);
  });

  it('gives a {0} literal its own empty frame, so arguments keep their places', () => {
    const framer = new CommandFramer(1024, 1024);
    framer.push(Buffer.from('a1 LOGIN alice {0}\r\n\r\n'));
    const kinds = frames(framer).map((f) =>
      f.kind === 'line' ? `line:${f.text}` : `literal:${f.data.length}`,
    );
    assert.deepEqual(kinds, ['line:a1 LOGIN alice {0}', 'literal:0', 'line:']);
  });

  it('returns literal data as it arrives', () => {
    const framer = new CommandFramer(1024, 1024);
    framer.push(Buffer.from('a1 ID {10}\r\n12345'));
    const got = frames(framer);
    assert.equal(got.length, 2);
    assert.deepEqual(got[1], { kind: 'literal', data: Buffer.from('12345'), remaining: 5 });
    framer.push(Buffer.from('67890)\r\n'));
    assert.deepEqual(
      frames(framer).map((f) => f.kind),
      ['literal', 'line'],
    );
  });

  it('tells synchronising from non-synchronising literals', () => {
    const framer = new CommandFramer(1024, 1024);
    framer.push(Buffer.from('a LOGIN {3}\r\n'));
    const [frame] = frames(framer);
    assert.deepEqual(frame?.kind === 'line' && frame.literal, { size: 3, synchronising: true });
  });

  it('refuses a literal over the limit and a line over the limit', () => {
    const framer = new CommandFramer(64, 16);
    framer.push(Buffer.from('a LOGIN {17}\r\n'));
    assert.throws(() => framer.next(), LiteralTooLargeError);
    const lines = new CommandFramer(64, 16);
    lines.push(Buffer.alloc(100, 0x41));
    assert.throws(() => lines.next(), LineTooLongError);
  });

  it('survives binary garbage: every byte ends up in some frame or in the rest', () => {
    const framer = new CommandFramer(1 << 20, 1024);
    const garbage = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256));
    framer.push(garbage);
    let total = 0;
    for (const frame of frames(framer)) total += frame.kind === 'line' ? frame.raw.length : frame.data.length;
    assert.equal(total + framer.drain().length, garbage.length);
  });
});
