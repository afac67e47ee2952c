import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ehloMechanisms,
  explainSmtpRefusal,
  formatReply,
  replyCollector,
  rewriteEhlo,
} from '../../../../src/protocols/smtp/replies.ts';

const line = (text: string) => ({ raw: Buffer.from(`${text}\r\n`), text });

describe('SMTP replies', () => {
  it('collects a multi-line reply up to its last line, byte-exact', () => {
    const collect = replyCollector();
    assert.equal(collect(line('250-mx.example.com')), undefined);
    assert.equal(collect(line('250-AUTH LOGIN XOAUTH2')), undefined);
    const reply = collect(line('250 SIZE 35882577'));
    assert.equal(reply?.code, 250);
    assert.deepEqual(reply?.lines, ['mx.example.com', 'AUTH LOGIN XOAUTH2', 'SIZE 35882577']);
    assert.equal(
      reply?.raw.toString(),
      '250-mx.example.com\r\n250-AUTH LOGIN XOAUTH2\r\n250 SIZE 35882577\r\n',
    );
  });

  it('accepts a bare code as a last line', () => {
    assert.equal(replyCollector()(line('354'))?.code, 354);
  });

  it('rewrites every AUTH line, keeps the legacy AUTH= form rewritten, and drops STARTTLS', () => {
    const lines = [
      'mx.example.com',
      'AUTH LOGIN XOAUTH2',
      'AUTH=OAUTHBEARER XOAUTH2',
      'STARTTLS',
      '8BITMIME',
    ];
    assert.deepEqual(rewriteEhlo(lines, { localStartTls: false }), [
      'mx.example.com',
      '8BITMIME',
      'AUTH PLAIN LOGIN',
      'AUTH=PLAIN LOGIN',
    ]);
    assert.deepEqual(rewriteEhlo(['mx'], { localStartTls: true }), ['mx', 'AUTH PLAIN LOGIN', 'STARTTLS']);
    assert.equal(
      formatReply(250, rewriteEhlo(['mx', 'AUTH XOAUTH2', '8BITMIME'], { localStartTls: false })),
      '250-mx\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n',
    );
  });

  it("reads the server's mechanisms from both AUTH forms", () => {
    assert.deepEqual(ehloMechanisms(['mx', 'AUTH LOGIN xoauth2', 'AUTH=OAUTHBEARER']), [
      'LOGIN',
      'XOAUTH2',
      'OAUTHBEARER',
    ]);
  });

  it('explains that 5.7.139 is a tenant setting, not a token problem', () => {
    const reply =
      '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.';
    assert.match(explainSmtpRefusal(reply) ?? '', /SMTP AUTH disabled; the token is fine/);
    assert.equal(explainSmtpRefusal('535 5.7.3 Authentication unsuccessful'), undefined);
  });
});
