import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { runInit } from '../../../src/cli/init-command.ts';

let dir: string;

function capture() {
  const stream = new PassThrough();
  let text = '';
  stream.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
  });
  return { stream, text: () => text };
}

describe('mailbridge init', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-init-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes an owner-only starting configuration and says what to do next', async () => {
    const output = join(dir, 'emailproxy.config');
    const out = capture();
    const err = capture();
    const code = await runInit(
      { provider: 'gmail', output, account: 'me@gmail.com' },
      out.stream,
      err.stream,
    );
    assert.equal(code, 0, err.text());
    assert.equal((await stat(output)).mode & 0o777, 0o600);
    const text = await readFile(output, 'utf8');
    assert.match(text, /^\[me@gmail\.com\]$/m);
    assert.match(text, /^oauth2_scope = https:\/\/mail\.google\.com\/$/m);
    // Google sends a refresh token only from its consent screen, so the template always asks for it.
    assert.match(
      text,
      /^permission_url = https:\/\/accounts\.google\.com\/o\/oauth2\/v2\/auth\?prompt=consent$/m,
    );
    assert.match(
      out.text(),
      /^wrote .*emailproxy\.config for Gmail and Google Workspace\nnext:\n {2}1\. edit .*client ID and client secret in \[me@gmail\.com\]/,
    );
  });

  it('never overwrites an existing file', async () => {
    const output = join(dir, 'existing.config');
    await writeFile(output, '# my tokens live here\n');
    const err = capture();
    const code = await runInit({ provider: 'office365', output }, capture().stream, err.stream);
    assert.equal(code, 2);
    assert.match(err.text(), /existing\.config already exists: not overwriting it/);
    assert.equal(await readFile(output, 'utf8'), '# my tokens live here\n');
  });

  it('prints to standard output with --output -', async () => {
    const out = capture();
    assert.equal(await runInit({ provider: 'outlook', output: '-' }, out.stream, capture().stream), 0);
    assert.match(
      out.text(),
      /^token_url = https:\/\/login\.microsoftonline\.com\/consumers\/oauth2\/v2\.0\/token$/m,
    );
    assert.match(out.text(), /^server_address = smtp-mail\.outlook\.com$/m);
  });
});
