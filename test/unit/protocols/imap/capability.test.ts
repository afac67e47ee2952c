import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  parseCapabilityLine,
  rewriteCapabilityLine,
  withCapabilityCode,
} from '../../../../src/protocols/imap/capability.ts';

const plain = { localStartTls: false };

describe('IMAP capability rewriting', () => {
  it('offers AUTH=PLAIN and SASL-IR instead of the OAuth mechanisms', () => {
    assert.equal(
      rewriteCapabilityLine(
        '* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=PLAIN AUTH=OAUTHBEARER ID',
        plain,
      ),
      '* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR ID',
    );
  });

  it('drops LOGINDISABLED and STARTTLS (which would be passed upstream)', () => {
    assert.equal(
      rewriteCapabilityLine('* CAPABILITY IMAP4rev1 IMAP4 STARTTLS LOGINDISABLED ID', plain),
      '* CAPABILITY IMAP4rev1 IMAP4 AUTH=PLAIN SASL-IR ID',
    );
  });

  it('offers STARTTLS when mailbridge itself can do it', () => {
    assert.equal(
      rewriteCapabilityLine('* CAPABILITY IMAP4rev1 AUTH=XOAUTH2', { localStartTls: true }),
      '* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN SASL-IR',
    );
  });

  it('rewrites the response code of a greeting or a tagged reply', () => {
    assert.equal(
      rewriteCapabilityLine(
        '* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=OAUTHBEARER AUTH=XOAUTH2] Dovecot ready.',
        plain,
      ),
      '* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR LITERAL+] Dovecot ready.',
    );
    assert.equal(
      rewriteCapabilityLine('a1 OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] Pre-login capabilities listed', plain),
      'a1 OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] Pre-login capabilities listed',
    );
  });

  it("never reads the server's text as a replacement pattern", () => {
    assert.equal(
      rewriteCapabilityLine('* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 X$&Y] ready', plain),
      '* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR X$&Y] ready',
    );
    assert.equal(
      withCapabilityCode('* OK [CAPABILITY A] $& ready', ['B$&']),
      '* OK [CAPABILITY B$&] $& ready',
    );
  });

  it('leaves other lines alone', () => {
    assert.equal(rewriteCapabilityLine('* OK Microsoft Exchange IMAP4 service is ready.', plain), undefined);
    assert.equal(rewriteCapabilityLine('* 3 FETCH (BODY[] {14}', plain), undefined);
  });

  it('parses the atoms a server announces', () => {
    assert.deepEqual(parseCapabilityLine('* CAPABILITY IMAP4rev1 AUTH=XOAUTH2'), [
      'IMAP4rev1',
      'AUTH=XOAUTH2',
    ]);
    assert.deepEqual(parseCapabilityLine('* OK [CAPABILITY IMAP4rev1 SASL-IR] hi'), ['IMAP4rev1', 'SASL-IR']);
    assert.equal(parseCapabilityLine('* OK hi'), undefined);
  });

  it('puts fresh capabilities into a greeting, with or without a code already there', () => {
    assert.equal(withCapabilityCode('* OK [CAPABILITY A] ready', ['B', 'C']), '* OK [CAPABILITY B C] ready');
    assert.equal(withCapabilityCode('* OK ready', ['B']), '* OK [CAPABILITY B] ready');
  });
});
