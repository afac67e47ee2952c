import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { IniDocument, parseInteger } from '../../../src/config/ini.ts';
import { ErrorCode, isMailbridgeError } from '../../../src/errors.ts';
import {
  Cryptographer,
  CURRENT_ITERATIONS,
  decodePythonBase64,
  type KeySource,
  LEGACY_ITERATIONS,
} from '../../../src/tokens/cryptographer.ts';
import { fernetDecrypt, parseFernetToken } from '../../../src/tokens/fernet.ts';
import { KeyDeriver } from '../../../src/tokens/key-derivation.ts';

// Values encrypted by (a replica of) email-oauth2-proxy's Cryptographer with Python `cryptography`, and Python's own
// MultiFernet.rotate() of each (test/fixtures/generate.py).
interface StoredValue {
  plaintext: string;
  token: string;
  requires_rotation: boolean;
  rotate_iv: string;
  rotated: string;
}
interface Fixtures {
  password: string;
  salt: string;
  keys: Record<string, string>;
  accounts: { token_iterations: number | null; key_order: number[]; values: Record<string, StoredValue> }[];
  wrong_password_token: string;
  proxy_cache: { file: string; section: string; access_token: string; refresh_token: string };
}
const TOKENS = new URL('../../fixtures/tokens/', import.meta.url);
const fixtures = JSON.parse(readFileSync(new URL('fernet-vectors.json', TOKENS), 'utf8')) as Fixtures;
const saltDecoding = JSON.parse(readFileSync(new URL('salt-decoding.json', TOKENS), 'utf8')) as [
  string,
  string | null,
][];

const keyFor = (iterations: number): Buffer =>
  Buffer.from(fixtures.keys[String(iterations)] ?? '', 'base64url');

/** The fixture's keys instead of PBKDF2 (which has its own test); records every request. */
class FixtureKeys implements KeySource {
  readonly requests: { password: string; salt: string; iterations: number }[] = [];

  async derive(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
    this.requests.push({ password, salt: salt.toString('base64'), iterations });
    if (
      password === fixtures.password &&
      salt.toString('base64') === fixtures.salt &&
      fixtures.keys[iterations]
    ) {
      return keyFor(iterations);
    }
    // Any other password or salt: a key that matches nothing, as a wrong password would give.
    return Buffer.alloc(32, iterations % 251);
  }
}

function create(
  options: { iterations?: number; password?: string; salt?: string; deriver?: KeySource } = {},
) {
  return Cryptographer.create({
    deriver: options.deriver ?? new FixtureKeys(),
    password: options.password ?? fixtures.password,
    salt: 'salt' in options ? options.salt : fixtures.salt,
    iterations: options.iterations,
  });
}

const wrongPassword = (pattern?: RegExp) => (error: unknown) => {
  assert.ok(isMailbridgeError(error, ErrorCode.TOKEN_WRONG_PASSWORD), String(error));
  if (pattern) assert.match(error.message, pattern);
  return true;
};

describe('Cryptographer keys, as email-oauth2-proxy picks them', () => {
  for (const [stored, order] of [
    [undefined, [1_200_000, 100_000]],
    [1_200_000, [1_200_000, 100_000]],
    [100_000, [1_200_000, 100_000]],
    [1_000_000, [1_200_000, 1_000_000, 100_000]],
    [870_000, [1_200_000, 870_000, 100_000]],
    [2_000_000, [2_000_000, 1_200_000, 100_000]],
  ] as const) {
    it(`token_iterations ${stored ?? 'missing'} gives keys for ${order.join(', ')}`, async () => {
      const deriver = new FixtureKeys();
      const crypto = await create({ iterations: stored, deriver });
      assert.deepEqual(crypto.iterationOrder, order);
      assert.deepEqual(deriver.requests.map((r) => r.iterations).sort(), [...order].sort());
      assert.equal(crypto.iterations, CURRENT_ITERATIONS);
      assert.equal(crypto.saltOrigin, 'stored');
      assert.equal(crypto.saltBase64, fixtures.salt);
    });
  }

  it('matches the fixture key order for every stored account', async () => {
    for (const account of fixtures.accounts) {
      const crypto = await create({ iterations: account.token_iterations ?? undefined });
      assert.deepEqual(crypto.iterationOrder, account.key_order);
    }
    assert.equal(LEGACY_ITERATIONS, 100_000);
  });

  it('starts all derivations at once', async () => {
    let started = 0;
    const release: (() => void)[] = [];
    const deriver: KeySource = {
      derive: () => {
        started++;
        return new Promise((resolve) => release.push(() => resolve(Buffer.alloc(32))));
      },
    };
    const pending = create({ iterations: 870_000, deriver });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(started, 3, 'three derivations in flight before any finished');
    for (const done of release) done();
    await pending;
  });

  it('refuses an unusable token_iterations', async () => {
    for (const iterations of [0, -1, 1.5, Number.NaN, 2 ** 31]) {
      await assert.rejects(create({ iterations }), (e: unknown) =>
        isMailbridgeError(e, ErrorCode.CONFIG_INVALID),
      );
    }
  });
});

describe('Cryptographer salt, as the proxy reads token_salt', () => {
  it('decodes like Python base64.b64decode (lenient alphabet, strict padding) on 300+ inputs', () => {
    assert.ok(saltDecoding.length > 250);
    for (const [text, python] of saltDecoding) {
      assert.equal(decodePythonBase64(text)?.toString('hex'), python ?? undefined, JSON.stringify(text));
    }
  });

  it('makes a new 16-byte salt when there is none, or when it does not decode to any byte', async () => {
    for (const [salt, origin] of [
      [undefined, 'missing'],
      ['', 'missing'],
      ['c2FsdA', 'invalid'],
      ['!!!!', 'invalid'],
      ['====', 'invalid'],
    ] as const) {
      const crypto = await create({ salt });
      assert.equal(crypto.saltOrigin, origin, String(salt));
      assert.equal(Buffer.from(crypto.saltBase64, 'base64').length, 16);
      assert.match(crypto.saltBase64, /^[A-Za-z0-9+/]{22}==$/);
    }
    const a = await create({ salt: undefined });
    const b = await create({ salt: undefined });
    assert.notEqual(a.saltBase64, b.saltBase64);
  });

  it('uses a decodable salt of any length as it is, as Python does', async () => {
    const deriver = new FixtureKeys();
    const crypto = await create({ salt: 'QU JD-_', deriver });
    assert.equal(crypto.saltOrigin, 'stored');
    assert.equal(crypto.saltBase64, 'QUJD');
    assert.ok(deriver.requests.every((r) => r.salt === 'QUJD'));
  });
});

describe('Cryptographer against values the Python tool stored', () => {
  for (const account of fixtures.accounts) {
    it(`decrypts, rotates and re-encrypts values of an account with token_iterations ${account.token_iterations}`, async () => {
      const crypto = await create({ iterations: account.token_iterations ?? undefined });
      for (const [field, value] of Object.entries(account.values)) {
        assert.equal(crypto.decrypt(value.token), value.plaintext, field);
        assert.equal(crypto.needsRotation(value.token), value.requires_rotation, field);
        assert.equal(
          crypto.reencrypt(value.token, { iv: Buffer.from(value.rotate_iv, 'hex') }),
          value.rotated,
          field,
        );
      }
    });
  }

  it('rotation: re-encrypting every value lets the current parameters alone read them, timestamps kept', async () => {
    const old = fixtures.accounts.find((a) => a.token_iterations === 870_000);
    assert.ok(old);
    const before = await create({ iterations: 870_000 });
    const values = Object.values(old.values);
    assert.ok(values.some((v) => before.needsRotation(v.token)));
    const rotated = values.map((v) => before.reencrypt(v.token));
    const after = await create({ iterations: before.iterations });
    assert.deepEqual(after.iterationOrder, [1_200_000, 100_000]);
    rotated.forEach((token, i) => {
      const value = values[i] as StoredValue;
      assert.equal(after.decrypt(token), value.plaintext);
      assert.equal(after.needsRotation(token), false);
      assert.equal(parseFernetToken(token).timestamp, parseFernetToken(value.token).timestamp);
      assert.notEqual(token, before.reencrypt(value.token), 'a fresh IV each time');
    });
  });

  it('reads the cache file Python wrote after a first login, with real PBKDF2 (the only 1.2 M derivation here)', async () => {
    const { file, section, access_token, refresh_token } = fixtures.proxy_cache;
    const doc = IniDocument.parse(readFileSync(new URL(file, TOKENS), 'utf8'), file);
    const deriver = new KeyDeriver();
    const crypto = await Cryptographer.create({
      deriver,
      password: fixtures.password,
      salt: doc.get(section, 'token_salt'),
      iterations: parseInteger(doc.get(section, 'token_iterations') ?? ''),
    });
    assert.equal(crypto.decrypt(doc.get(section, 'access_token') ?? ''), access_token);
    assert.equal(crypto.decrypt(doc.get(section, 'refresh_token') ?? ''), refresh_token);
    assert.equal(deriver.derivationCount, 2);
    const again = await Cryptographer.create({
      deriver,
      password: fixtures.password,
      salt: crypto.saltBase64,
    });
    assert.equal(again.decrypt(doc.get(section, 'access_token') ?? ''), access_token);
    assert.equal(deriver.derivationCount, 2, 'the second login reuses the derived keys');
  });
});

describe('Cryptographer encryption', () => {
  it('encrypts with the 1.2 M key, readable by a plain Fernet with that key', async () => {
    for (const iterations of [undefined, 870_000, 2_000_000]) {
      const crypto = await create({ iterations });
      const token = crypto.encrypt('new access token', { now: 1_700_000_123 });
      assert.equal(fernetDecrypt(keyFor(1_200_000), token), 'new access token');
      assert.equal(parseFernetToken(token).timestamp, 1_700_000_123n);
      assert.equal(crypto.needsRotation(token), false);
    }
  });

  it('round-trips a 1 MiB value', async () => {
    const crypto = await create();
    const big = `${'x'.repeat(1 << 20)}✓`;
    assert.equal(crypto.decrypt(crypto.encrypt(big)), big);
  });
});

describe('Cryptographer failures', () => {
  it('a value encrypted under another password is a wrong password; nothing needs rotation', async () => {
    const crypto = await create({ iterations: 870_000 });
    assert.throws(
      () => crypto.decrypt(fixtures.wrong_password_token),
      wrongPassword(/does not decrypt with this password/),
    );
    assert.throws(() => crypto.reencrypt(fixtures.wrong_password_token), wrongPassword());
    assert.equal(crypto.needsRotation(fixtures.wrong_password_token), false);
  });

  it('the right values under a wrong password', async () => {
    const crypto = await create({ password: 'typo' });
    for (const value of Object.values(fixtures.accounts[0]?.values ?? {})) {
      assert.throws(() => crypto.decrypt(value.token), wrongPassword());
    }
  });

  it('hostile stored values: garbage, truncated, flipped HMAC, 1 MiB junk', async () => {
    const crypto = await create();
    const good = fixtures.accounts[0]?.values.access_token?.token ?? '';
    const flipped = Buffer.from(good, 'base64url');
    flipped[flipped.length - 1] = (flipped.at(-1) ?? 0) ^ 0x80;
    for (const bad of [
      '',
      '*** not a token ***',
      '\u0000\u0001\u00ff binary',
      good.slice(0, 40),
      flipped.toString('base64url'),
      `gAAAAA${'A'.repeat(1 << 20)}`,
    ]) {
      assert.throws(() => crypto.decrypt(bad), wrongPassword(), bad.slice(0, 20));
      assert.equal(crypto.needsRotation(bad), false);
    }
    assert.throws(() => crypto.decrypt('not base64!'), wrongPassword(/is not a fernet token/));
  });
});
