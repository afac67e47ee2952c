import assert from 'node:assert/strict';
import { generateKeyPairSync, verify } from 'node:crypto';
import { describe, it } from 'node:test';
import { serviceAccountAssertion, signJwt } from '../../../src/oauth/jwt.ts';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

function decode(jwt: string) {
  const [header = '', payload = '', signature = ''] = jwt.split('.');
  return {
    header: JSON.parse(Buffer.from(header, 'base64url').toString()) as Record<string, unknown>,
    claims: JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>,
    valid: verify(
      'sha256',
      Buffer.from(`${header}.${payload}`),
      publicKey,
      Buffer.from(signature, 'base64url'),
    ),
  };
}

describe('JWT signing', () => {
  it('signs RS256 that verifies with the public key', () => {
    const { header, claims, valid } = decode(signJwt({ kid: 'k' }, { a: 1 }, privateKeyPem));
    assert.deepEqual(header, { alg: 'RS256', typ: 'JWT', kid: 'k' });
    assert.deepEqual(claims, { a: 1 });
    assert.equal(valid, true);
  });

  it('builds a service-account assertion for the user, valid for an hour', () => {
    const jwt = serviceAccountAssertion({
      clientEmail: 'robot@p.iam.example',
      privateKeyPem,
      tokenUrl: 'https://oauth2.example/token',
      scope: 'https://mail.google.com/',
      subject: 'alice@example.com',
      now: 1000,
    });
    assert.deepEqual(decode(jwt).claims, {
      iss: 'robot@p.iam.example',
      sub: 'alice@example.com',
      scope: 'https://mail.google.com/',
      aud: 'https://oauth2.example/token',
      iat: 1000,
      exp: 4600,
    });
  });
});
