import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rewriteCapa, saslMechanisms } from '../../../../src/protocols/pop3/capa.ts';

describe('POP3 CAPA rewriting', () => {
  it('offers USER and SASL PLAIN instead of the OAuth mechanisms, and drops STLS', () => {
    assert.deepEqual(
      rewriteCapa(['TOP', 'UIDL', 'SASL XOAUTH2 OAUTHBEARER', 'RESP-CODES', 'STLS'], {
        localStartTls: false,
      }),
      ['TOP', 'UIDL', 'RESP-CODES', 'USER', 'SASL PLAIN'],
    );
  });

  it('adds USER once, and STLS when mailbridge offers it', () => {
    assert.deepEqual(rewriteCapa(['USER', 'TOP'], { localStartTls: true }), [
      'TOP',
      'USER',
      'SASL PLAIN',
      'STLS',
    ]);
  });

  it("reads the server's SASL mechanisms", () => {
    assert.deepEqual(saslMechanisms(['TOP', 'SASL xoauth2 OAUTHBEARER']), ['XOAUTH2', 'OAUTHBEARER']);
    assert.deepEqual(saslMechanisms(['TOP']), []);
  });
});
