import assert from 'node:assert/strict';
import { createCipheriv, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ErrorCode, isMailbridgeError } from '../../../src/errors.ts';
import { fernetDecrypt, fernetEncrypt, fernetSeal, parseFernetToken } from '../../../src/tokens/fernet.ts';

// Tokens made by Python `cryptography`'s Fernet with keys PBKDF2-derived as email-oauth2-proxy derives them
// (test/fixtures/generate.py); the keys are stored, so this file runs no PBKDF2 at all.
interface Vector {
  iterations: number;
  plaintext: string;
  timestamp: string;
  iv: string;
  token: string;
}
const fixtures = JSON.parse(
  readFileSync(new URL('../../fixtures/tokens/fernet-vectors.json', import.meta.url), 'utf8'),
) as { keys: Record<string, string>; vectors: Vector[] };

const keyFor = (iterations: number): Buffer =>
  Buffer.from(fixtures.keys[String(iterations)] ?? '', 'base64url');
const KEY = keyFor(1_200_000);
const OTHER_KEY = keyFor(100_000);

function isInvalid(reason?: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(isMailbridgeError(error, ErrorCode.TOKEN_INVALID), String(error));
    if (reason) assert.match(error.message, reason);
    return true;
  };
}

function tamper(token: string, change: (bytes: Buffer) => Buffer): string {
  return change(Buffer.from(token, 'base64url')).toString('base64').replaceAll('+', '-').replaceAll('/', '_');
}

describe('fernet against Python cryptography', () => {
  it('decrypts every vector (1.2 M, 1 M, 870 k and 100 k iteration keys; empty to 1.5 KB plaintexts)', () => {
    assert.equal(fixtures.vectors.length, 28);
    for (const vector of fixtures.vectors) {
      assert.equal(fernetDecrypt(keyFor(vector.iterations), vector.token), vector.plaintext);
      assert.equal(parseFernetToken(vector.token).timestamp, BigInt(vector.timestamp));
    }
  });

  it('encrypts to exactly the token Python makes with the same time and IV', () => {
    for (const vector of fixtures.vectors) {
      const key = keyFor(vector.iterations);
      const iv = Buffer.from(vector.iv, 'hex');
      const timestamp = BigInt(vector.timestamp);
      assert.equal(fernetSeal(key, Buffer.from(vector.plaintext, 'utf8'), timestamp, iv), vector.token);
      if (timestamp <= BigInt(Number.MAX_SAFE_INTEGER)) {
        assert.equal(fernetEncrypt(key, vector.plaintext, { now: Number(timestamp), iv }), vector.token);
      }
    }
  });

  it("writes the '=' padding Python requires and the URL-safe alphabet", () => {
    const tokens = fixtures.vectors.map((v) => fernetEncrypt(KEY, v.plaintext));
    assert.ok(tokens.some((t) => t.endsWith('=')));
    for (const token of tokens) {
      assert.equal(token.length % 4, 0);
      assert.match(token, /^gAAAAA[A-Za-z0-9_-]+={0,2}$/);
    }
  });

  it('reads tokens with or without padding', () => {
    for (const vector of fixtures.vectors) {
      assert.equal(
        fernetDecrypt(keyFor(vector.iterations), vector.token.replace(/=+$/, '')),
        vector.plaintext,
      );
    }
  });

  it('records whole seconds, rounded down, and a fresh random IV each time', () => {
    const token = fernetEncrypt(KEY, 'x', { now: 1_700_000_000.999 });
    assert.equal(parseFernetToken(token).timestamp, 1_700_000_000n);
    assert.notEqual(fernetEncrypt(KEY, 'x', { now: 1 }), fernetEncrypt(KEY, 'x', { now: 1 }));
    const now = BigInt(Math.floor(Date.now() / 1000));
    assert.ok(parseFernetToken(fernetEncrypt(KEY, 'x')).timestamp - now <= 1n);
  });

  it('round-trips a 1 MiB plaintext', () => {
    const big = 'ü'.repeat(1 << 19);
    assert.equal(fernetDecrypt(KEY, fernetEncrypt(KEY, big)), big);
  });

  it('rejects bad arguments', () => {
    assert.throws(() => fernetEncrypt(Buffer.alloc(31), 'x'), TypeError);
    assert.throws(() => fernetEncrypt(KEY, 'x', { iv: Buffer.alloc(15) }), TypeError);
    assert.throws(() => fernetEncrypt(KEY, 'x', { now: -1 }), RangeError);
    assert.throws(() => fernetSeal(KEY, Buffer.from('x'), 2n ** 64n), RangeError);
  });
});

describe('fernet rejects what Python rejects (TOKEN_INVALID)', () => {
  const vector = fixtures.vectors.find((v) => v.iterations === 1_200_000 && v.plaintext === 'a');
  assert.ok(vector);
  const token = vector.token;

  it('a token made with another key', () => {
    assert.throws(() => fernetDecrypt(OTHER_KEY, token), isInvalid(/signature does not match/));
  });

  it('a flipped bit anywhere: HMAC, ciphertext, IV, timestamp, version', () => {
    const length = Buffer.from(token, 'base64url').length;
    for (const index of [length - 1, length - 32, 40, 20, 5, 1]) {
      const altered = tamper(token, (b) => {
        b[index] = (b[index] ?? 0) ^ 0x01;
        return b;
      });
      assert.throws(() => fernetDecrypt(KEY, altered), isInvalid(), `byte ${index}`);
    }
    const version = tamper(token, (b) => {
      b[0] = 0x81;
      return b;
    });
    assert.throws(() => fernetDecrypt(KEY, version), isInvalid(/version byte 0x81/));
  });

  it('every truncation', () => {
    // Dropping only the '=' padding is not a truncation: unpadded input is accepted on purpose.
    const unpadded = token.replace(/=+$/, '');
    for (let length = 0; length < unpadded.length; length++) {
      assert.throws(() => fernetDecrypt(KEY, unpadded.slice(0, length)), isInvalid(), `length ${length}`);
    }
    const bytes = Buffer.from(token, 'base64url');
    for (let length = 0; length < bytes.length; length++) {
      const cut = bytes.subarray(0, length).toString('base64url');
      assert.throws(() => fernetDecrypt(KEY, cut), isInvalid(), `bytes ${length}`);
    }
  });

  it('text that is not base64url: spaces, other symbols, non-ASCII, misplaced or excess padding', () => {
    for (const bad of [
      '',
      ' ',
      `${token} `,
      `${token.slice(0, 10)} ${token.slice(10)}`,
      `${token.slice(0, 10)}.${token.slice(11)}`,
      `${token.slice(0, -2)}é=`,
      `${token}=`,
      `${token.replace(/=+$/, '')}===`,
      `=${token}`,
      'gAAAAA',
    ]) {
      assert.throws(() => fernetDecrypt(KEY, bad), isInvalid(), JSON.stringify(bad));
    }
  });

  it('binary garbage of every size, quickly', () => {
    let seed = 12345;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    for (let i = 0; i < 500; i++) {
      const bytes = Buffer.from(
        Array.from({ length: Math.floor(random() * 300) }, () => Math.floor(random() * 256)),
      );
      if (i % 3 === 0) bytes[0] = 0x80;
      for (const text of [bytes.toString('latin1'), bytes.toString('base64url'), bytes.toString('base64')]) {
        assert.throws(() => fernetDecrypt(KEY, text), isInvalid());
      }
    }
    const started = performance.now();
    assert.throws(() => fernetDecrypt(KEY, `gAAAAA${'A'.repeat(1 << 20)}`), isInvalid());
    assert.throws(() => fernetDecrypt(KEY, '\u0000'.repeat(1 << 20)), isInvalid());
    assert.ok(performance.now() - started < 1000);
  });

  it('a correctly signed token with bad PKCS7 padding or a partial block', () => {
    const signing = KEY.subarray(0, 16);
    const encryption = KEY.subarray(16);
    const iv = Buffer.alloc(16, 7);
    const seal = (ciphertext: Buffer): string => {
      const body = Buffer.concat([Buffer.from([0x80]), Buffer.alloc(8), iv, ciphertext]);
      const mac = createHmac('sha256', signing).update(body).digest();
      return Buffer.concat([body, mac]).toString('base64').replaceAll('+', '-').replaceAll('/', '_');
    };
    const cipher = createCipheriv('aes-128-cbc', encryption, iv).setAutoPadding(false);
    const unpadded = Buffer.concat([cipher.update(Buffer.alloc(16, 0x41)), cipher.final()]);
    assert.throws(() => fernetDecrypt(KEY, seal(unpadded)), isInvalid(/padding/));
    assert.throws(() => fernetDecrypt(KEY, seal(unpadded.subarray(0, 15))), isInvalid(/too short/));
    assert.throws(
      () => fernetDecrypt(KEY, seal(Buffer.concat([unpadded, unpadded.subarray(0, 8)]))),
      isInvalid(/whole number of AES blocks/),
    );
  });

  it('a plaintext that is not UTF-8', () => {
    const token = fernetSeal(KEY, Buffer.from([0xff, 0xfe]), 0n);
    assert.throws(() => fernetDecrypt(KEY, token), isInvalid(/not UTF-8/));
  });
});
