import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ThreadLimits } from '../../../src/thread/limits.ts';
import { parseHeader } from '../../../src/thread/message.ts';
import { extractIds, formatId, normaliseId, threadIds } from '../../../src/thread/message-id.ts';

const idsOf = (text: string) => threadIds(parseHeader(Buffer.from(text, 'latin1')));

describe('extractIds', () => {
  it('takes the IDs between angle brackets, without the brackets', () => {
    assert.deepEqual(extractIds(' <a.b@example.com>'), ['a.b@example.com']);
  });

  it('takes several IDs on one line, with or without whitespace or commas between them', () => {
    assert.deepEqual(extractIds('<1@x> <2@x>\t<3@x>'), ['1@x', '2@x', '3@x']);
    assert.deepEqual(extractIds('<1@x><2@x>,<3@x>'), ['1@x', '2@x', '3@x']);
  });

  it('ignores comments, nested ones and ones that contain IDs (RFC 5322 §3.2.2)', () => {
    assert.deepEqual(extractIds('(first (nested) <no@x>) <1@x> (a \\) b <no2@x>) <2@x>'), ['1@x', '2@x']);
  });

  it('finds the ID in the phrases real In-Reply-To fields carry, ignoring quoted strings', () => {
    assert.deepEqual(extractIds(' <1@x> (Fred\'s message of "Mon, 1 Jan 2024 10:00:00 +0000")'), ['1@x']);
    assert.deepEqual(extractIds(' Your message of "Mon, 1 Jan 2024 <no@x>" <1@x>'), ['1@x']);
  });

  it('removes the whitespace a client folded into an ID', () => {
    assert.deepEqual(extractIds('<abc\tdef @x>'), ['abcdef@x']);
    assert.deepEqual(extractIds('< 1@x >'), ['1@x']);
  });

  it('takes IDs without brackets only when there are none at all, and only local@domain tokens', () => {
    assert.deepEqual(extractIds(' 1@x 2@x'), ['1@x', '2@x']);
    assert.deepEqual(extractIds(' 1@x (comment@y) "quoted@z" plainword'), ['1@x']);
    assert.deepEqual(extractIds(' <1@x> 2@x'), ['1@x']);
  });

  it('drops what is cut off, empty or unbalanced, keeping the ID after a stray bracket', () => {
    assert.deepEqual(extractIds('<1@x> <2@x'), ['1@x']);
    assert.deepEqual(extractIds('<> <1@x>'), ['1@x']);
    assert.deepEqual(extractIds('<junk <1@x>'), ['1@x']);
    assert.deepEqual(extractIds('(unclosed <1@x>'), []);
  });
});

describe('normaliseId', () => {
  it('accepts an ID with or without brackets and surrounding whitespace', () => {
    assert.equal(normaliseId('<1@x>'), '1@x');
    assert.equal(normaliseId(' 1@x\t'), '1@x');
    assert.equal(formatId('1@x'), '<1@x>');
  });

  it('refuses empty, spaced, bracketed-inside, control characters and over-long IDs', () => {
    for (const text of [
      '',
      '<>',
      'a b@x',
      '<a<b@x>',
      'a\u0001@x',
      `<${'x'.repeat(ThreadLimits.idChars + 1)}>`,
    ]) {
      assert.equal(normaliseId(text), undefined, JSON.stringify(text));
    }
    assert.equal(normaliseId(`<${'x'.repeat(ThreadLimits.idChars)}>`), 'x'.repeat(ThreadLimits.idChars));
  });

  it('takes an ID without brackets only when it is local@domain', () => {
    assert.equal(normaliseId('<no-at-sign>'), 'no-at-sign');
    assert.equal(normaliseId('no-at-sign'), undefined);
    assert.equal(normaliseId('a@b@c'), undefined);
  });
});

describe('threadIds', () => {
  it("separates the message's own ID from its ancestors, oldest first, without duplicates", () => {
    const ids = idsOf(
      'Message-ID: <3@x>\nReferences: <1@x>\n <2@x>\nIn-Reply-To: <2@x> (message of "x")\nSubject: x\n\n',
    );
    assert.deepEqual(ids, { own: ['3@x'], related: ['1@x', '2@x'] });
  });

  it('works without a Message-ID, and without any ID at all', () => {
    assert.deepEqual(idsOf('In-Reply-To: <2@x>\n\n'), { own: [], related: ['2@x'] });
    assert.deepEqual(idsOf('Subject: x\n\n'), { own: [], related: [] });
    assert.deepEqual(idsOf(''), { own: [], related: [] });
  });

  it('reads every copy of duplicated fields, and never lists its own ID as an ancestor', () => {
    const ids = idsOf('Message-ID: <1@x>\nMessage-ID: <1@x>\nReferences: <a@x>\nReferences: <b@x> <1@x>\n\n');
    assert.deepEqual(ids, { own: ['1@x'], related: ['a@x', 'b@x'] });
  });

  it('keeps the root and the most recent ancestors of a very long References field', () => {
    const all = Array.from({ length: 5000 }, (_, i) => `<${i}@x>`);
    const ids = idsOf(`Message-ID: <me@x>\nReferences: ${all.join('\n ')}\n\n`);
    assert.equal(ids.related.length, ThreadLimits.relatedIdsPerMessage);
    assert.equal(ids.related[0], '0@x');
    assert.equal(ids.related.at(-1), '4999@x');
    assert.equal(ids.related[1], `${5000 - ThreadLimits.relatedIdsPerMessage + 1}@x`);
  });

  it('returns 8-bit IDs as the UTF-8 text they are on the wire', () => {
    const message = Buffer.concat([Buffer.from('Message-ID: <caf'), Buffer.from('é@x>\n\n', 'utf8')]);
    assert.deepEqual(threadIds(parseHeader(message)).own, ['café@x']);
  });

  it('keeps an ID whose UTF-8 contains the byte 0xA0 (à), which \\s would have taken for a space', () => {
    const message = Buffer.from('Message-ID: <voilà@x>\nReferences: x@voilà\n\n', 'utf8');
    assert.deepEqual(threadIds(parseHeader(message)), { own: ['voilà@x'], related: ['x@voilà'] });
  });
});
