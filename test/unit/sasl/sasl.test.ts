import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  abortResponse,
  decodeBearerError,
  encodeOAuthBearer,
  encodeXOAuth2,
  explainBearerError,
  OAuthMechanism,
} from '../../../src/sasl/oauth.ts';
import { decodePlain, encodePlain } from '../../../src/sasl/plain.ts';

describe('SASL PLAIN', () => {
  it('decodes authzid NUL user NUL password, ignoring the authzid', () => {
    assert.deepEqual(
      decodePlain(Buffer.from('admin\0alice@example.com\0pw with spaces').toString('base64')),
      {
        username: 'alice@example.com',
        password: 'pw with spaces',
      },
    );
    assert.deepEqual(decodePlain(encodePlain({ username: 'ü@x', password: 'p' })), {
      username: 'ü@x',
      password: 'p',
    });
  });

  it('rejects what is not three parts or not base64', () => {
    assert.equal(decodePlain(Buffer.from('alice\0pw').toString('base64')), undefined);
    assert.equal(decodePlain('not base64!'), undefined);
    assert.equal(decodePlain(Buffer.from('\0a\0b\0c').toString('base64')), undefined);
  });
});

describe('bearer mechanisms', () => {
  it('encodes XOAUTH2 as Google and Microsoft document it', () => {
    assert.equal(
      Buffer.from(encodeXOAuth2('alice@example.com', 'tok'), 'base64').toString(),
      'user=alice@example.com\x01auth=Bearer tok\x01\x01',
    );
  });

  it('encodes OAUTHBEARER per RFC 7628 with the authzid escaped', () => {
    assert.equal(
      Buffer.from(encodeOAuthBearer('a,b=c@example.com', 'tok'), 'base64').toString(),
      'n,a=a=2Cb=3Dc@example.com,\x01auth=Bearer tok\x01\x01',
    );
  });

  it('aborts a failed exchange the way each mechanism wants', () => {
    assert.equal(abortResponse(OAuthMechanism.XOAUTH2), '');
    assert.equal(abortResponse(OAuthMechanism.OAUTHBEARER), 'AQ==');
  });

  it('decodes and explains the error challenge', () => {
    const challenge = Buffer.from('{"status":"invalid_token","scope":"imap","schemes":"bearer"}').toString(
      'base64',
    );
    const error = decodeBearerError(challenge);
    assert.equal(error?.status, 'invalid_token');
    assert.match(explainBearerError(error), /status invalid_token; it expects scope 'imap'/);
    assert.equal(decodeBearerError(Buffer.from('not json').toString('base64')), undefined);
    assert.match(explainBearerError(undefined), /rejected the access token/);
  });
});
