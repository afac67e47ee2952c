import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ArgumentError, loginCredentials, parseAstrings } from '../../../../src/protocols/imap/arguments.ts';

const text = (value: string) => ({ kind: 'text' as const, text: value });
const literal = (value: string) => ({ kind: 'literal' as const, data: Buffer.from(value, 'utf8') });

describe('LOGIN arguments', () => {
  it('reads atoms', () => {
    assert.deepEqual(parseAstrings([text('alice@example.com secret')]), ['alice@example.com', 'secret']);
  });

  it('reads quoted strings with both escapes (unlike the original, which kept \\\\ doubled)', () => {
    assert.deepEqual(parseAstrings([text('"alice@example.com" "p\\"a\\\\ss word"')]), [
      'alice@example.com',
      'p"a\\ss word',
    ]);
  });

  it('reads literals between text segments, with a literal marker ending each segment', () => {
    const values = parseAstrings([
      text('{17}'),
      literal('alice@example.com'),
      text(' {6+}'),
      literal('p w\r\nx'),
      text(''),
    ]);
    assert.deepEqual(values, ['alice@example.com', 'p w\r\nx']);
  });

  it('decodes UTF-8 in quoted strings that arrive as latin1 text', () => {
    const latin1 = Buffer.from('"bob@example.com" "pässwörd"', 'utf8').toString('latin1');
    assert.deepEqual(parseAstrings([text(latin1)]), ['bob@example.com', 'pässwörd']);
  });

  it('rejects an unclosed quoted string and a bad escape', () => {
    assert.throws(() => parseAstrings([text('"alice')]), ArgumentError);
    assert.throws(() => parseAstrings([text('"a\\b"')]), ArgumentError);
  });

  it('takes the rest of the line as the password, as the original does for unquoted spaces', () => {
    assert.deepEqual(loginCredentials(['alice@example.com', 'two', 'words']), {
      username: 'alice@example.com',
      password: 'two words',
    });
  });

  it('splits a single literal holding user and password', () => {
    assert.deepEqual(loginCredentials(['alice@example.com secret']), {
      username: 'alice@example.com',
      password: 'secret',
    });
  });

  it('refuses a LOGIN without a password', () => {
    assert.throws(() => loginCredentials(['alice@example.com']), ArgumentError);
    assert.throws(() => loginCredentials([]), ArgumentError);
  });
});
