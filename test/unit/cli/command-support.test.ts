import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CommandExit, exitCodeFor, readPassword } from '../../../src/cli/command-support.ts';
import { formatToken } from '../../../src/cli/token-command.ts';
import { ErrorCode, MailbridgeError } from '../../../src/errors.ts';

describe('management command support', () => {
  it('takes the password from the command before the environment, first line only', async () => {
    const env = { MAILBRIDGE_PASSWORD: 'from env' };
    assert.deepEqual(await readPassword({}, env), { password: 'from env', origin: 'MAILBRIDGE_PASSWORD' });
    assert.deepEqual(await readPassword({ passwordCommand: "printf 'first line\\nsecond\\n'" }, env), {
      password: 'first line',
      origin: '--password-command',
    });
    assert.equal(await readPassword({}, {}), undefined);
    assert.equal(await readPassword({}, { MAILBRIDGE_PASSWORD: '' }), undefined);
    await assert.rejects(readPassword({ passwordCommand: 'true' }, {}), /printed an empty first line/);
    await assert.rejects(readPassword({ passwordCommand: 'echo secret; exit 1' }, {}), (error: Error) => {
      assert.match(error.message, /failed \(exit status 1\); its output was not used/);
      assert.doesNotMatch(error.message, /secret/);
      return true;
    });
  });

  it('gives scripts distinct exit codes for "authorise it" and "wrong password"', () => {
    const code = (c: ErrorCode) => exitCodeFor(new MailbridgeError(c, 'x'));
    assert.equal(code(ErrorCode.OAUTH_AUTHORISATION_UNAVAILABLE), CommandExit.NEEDS_AUTHORISATION);
    assert.equal(code(ErrorCode.OAUTH_GRANT_INVALID), 3);
    assert.equal(code(ErrorCode.TOKEN_WRONG_PASSWORD), 4);
    assert.equal(code(ErrorCode.CONFIG_SYNTAX), 2);
    assert.equal(code(ErrorCode.ACCOUNT_UNKNOWN), 2);
    assert.equal(code(ErrorCode.OAUTH_NETWORK), 1);
    assert.equal(exitCodeFor(new Error('x')), 1);
  });

  it('formats the token raw or as a SASL initial response', () => {
    assert.equal(formatToken('raw', 'a@b.c', 'tok'), 'tok');
    assert.equal(
      Buffer.from(formatToken('sasl-xoauth2', 'a@b.c', 'tok'), 'base64').toString(),
      'user=a@b.c\x01auth=Bearer tok\x01\x01',
    );
    assert.equal(
      Buffer.from(formatToken('sasl-oauthbearer', 'a@b.c', 'tok'), 'base64').toString(),
      'n,a=a@b.c,\x01auth=Bearer tok\x01\x01',
    );
  });
});
