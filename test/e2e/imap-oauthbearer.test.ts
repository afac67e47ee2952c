import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { serverSection } from '../testbed/config-sections.ts';
import { type MailbridgeProcess, startMailbridge, stopMailbridgeAndBed } from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';
import { RawClient } from '../testbed/raw-client.ts';

/**
 * A server that offers OAUTHBEARER (RFC 7628) and not XOAUTH2: mailbridge must pick the mechanism from the
 * server's capabilities, and when the server refuses a token, tell the client why in its NO.
 */
const ERIN = 'erin@example.test';
const PASSWORD = 'secret';

describe('IMAP to a server that offers only OAUTHBEARER', () => {
  let bed: Testbed;
  let mailbridge: MailbridgeProcess;
  let port: number;

  before(async () => {
    bed = await startTestbed({ mechanisms: ['oauthbearer'] });
    bed.dovecot.seedMessage(ERIN, '1.msg', 'Subject: bearer\r\n\r\nhi\r\n');
    [port] = (await findFreePorts(1)) as [number];
    const configPath = join(bed.dir, 'emailproxy.config');
    await writeFile(
      configPath,
      [
        serverSection({ protocol: 'IMAP', localPort: port, serverPort: bed.dovecot.ports.imaps }),
        bed.accountSection(ERIN),
      ].join('\n'),
    );
    mailbridge = await startMailbridge({
      args: ['--external-auth', '--config-file', configPath],
      caCertPath: bed.certs.caCertPath,
      authorise: (url) => bed.oauth.authorize(url),
    });
    await mailbridge.waitForLog('mailbridge ready');
  });

  after(async () => {
    await stopMailbridgeAndBed(mailbridge, bed);
  });

  async function login(client: RawClient, tag: string): Promise<string> {
    await client.waitFor(/^\* OK [^\r\n]*\r\n/);
    return client.command(tag, `${tag} LOGIN ${ERIN} ${PASSWORD}\r\n`);
  }

  it('logs in upstream with OAUTHBEARER', async () => {
    const client = await RawClient.connect(port);
    try {
      assert.match(await login(client, 'a1'), /^a1 OK /m);
      assert.match(await client.command('a2', 'a2 SELECT INBOX\r\n'), /\* 1 EXISTS/);
    } finally {
      client.close();
    }
    await mailbridge.waitForLog(/authenticated 'erin@example\.test' upstream with OAUTHBEARER/);
  });

  it("explains the server's refusal, decoded from its error challenge, and keeps the connection", async () => {
    // Every token is now refused, so even the refreshed one is.
    bed.oauth.setRejectAccessTokens(true);
    const client = await RawClient.connect(port);
    try {
      const reply = await login(client, 'b1');
      assert.match(reply, /^b1 NO \[AUTHENTICATIONFAILED\] [^\r\n]*status invalid_token/m);
      assert.doesNotMatch(reply, /^\+/m, 'the SASL error challenge is not passed to a LOGIN client');
      bed.oauth.setRejectAccessTokens(false);
      assert.match(await client.command('b2', `b2 LOGIN ${ERIN} ${PASSWORD}\r\n`), /^b2 OK /m);
    } finally {
      bed.oauth.setRejectAccessTokens(false);
      client.close();
    }
  });
});
