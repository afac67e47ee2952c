import assert from 'node:assert/strict';
import { pbkdf2 } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { KeyDeriver, type Pbkdf2 } from '../../../src/tokens/key-derivation.ts';

// PBKDF2-HMAC-SHA256 outputs from Python `cryptography` (test/fixtures/generate.py); all at low iteration counts.
const vectors = JSON.parse(
  readFileSync(new URL('../../fixtures/tokens/pbkdf2-vectors.json', import.meta.url), 'utf8'),
) as { password: string; salt: string; iterations: number; derived: string }[];

const SALT = Buffer.from('0123456789abcdef');

/** A pbkdf2 whose calls complete only when the test says so, and which can be told to fail. */
function controlledPbkdf2() {
  const calls: { iterations: number; finish: (error?: Error) => void }[] = [];
  const fn: Pbkdf2 = (password, salt, iterations, keylen, digest, callback) => {
    calls.push({
      iterations,
      finish: (error) => {
        if (error) callback(error, Buffer.alloc(0));
        else pbkdf2(password, salt, iterations, keylen, digest, callback);
      },
    });
  };
  return { fn, calls };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('KeyDeriver', () => {
  it('derives what Python derives (empty, long and non-ASCII passwords; short, empty salts)', async () => {
    const deriver = new KeyDeriver();
    for (const v of vectors) {
      const derived = await deriver.derive(v.password, Buffer.from(v.salt, 'hex'), v.iterations);
      assert.equal(derived.toString('hex'), v.derived, `${JSON.stringify(v.password)} ${v.iterations}`);
    }
    assert.equal(deriver.derivationCount, vectors.length);
  });

  it('does not normalise Unicode: precomposed and decomposed é are different passwords', async () => {
    const deriver = new KeyDeriver();
    const salt = Buffer.from(vectors.find((v) => v.password === '\u00e9')?.salt ?? '', 'hex');
    const a = await deriver.derive('\u00e9', salt, 10);
    const b = await deriver.derive('e\u0301', salt, 10);
    assert.notDeepEqual(a, b);
  });

  it('caches by password, salt and iteration count, and hands out copies', async () => {
    const deriver = new KeyDeriver();
    const first = await deriver.derive('pw', SALT, 1000);
    first.fill(0);
    const second = await deriver.derive('pw', SALT, 1000);
    assert.notDeepEqual(second, first, 'changing a returned key does not change the cache');
    assert.equal(deriver.derivationCount, 1);
    await deriver.derive('pw2', SALT, 1000);
    await deriver.derive('pw', Buffer.from('other salt'), 1000);
    await deriver.derive('pw', SALT, 1001);
    assert.equal(deriver.derivationCount, 4);
    assert.equal(deriver.cachedCount, 4);
    deriver.clear();
    assert.equal(deriver.cachedCount, 0);
    await deriver.derive('pw', SALT, 1000);
    assert.equal(deriver.derivationCount, 5);
  });

  it('keeps salt and password apart in the cache index (no ambiguity from concatenation)', async () => {
    const deriver = new KeyDeriver();
    const a = await deriver.derive('bc', Buffer.from('a'), 10);
    const b = await deriver.derive('c', Buffer.from('ab'), 10);
    assert.notDeepEqual(a, b);
    assert.equal(deriver.derivationCount, 2);
  });

  it('shares one in-flight derivation between identical concurrent requests', async () => {
    const { fn, calls } = controlledPbkdf2();
    const deriver = new KeyDeriver({ pbkdf2: fn });
    const requests = Array.from({ length: 10 }, () => deriver.derive('pw', SALT, 50));
    await tick();
    assert.equal(calls.length, 1);
    calls[0]?.finish();
    const keys = await Promise.all(requests);
    assert.ok(keys.every((k) => k.equals(keys[0] as Buffer)));
    assert.equal(deriver.derivationCount, 1);
  });

  it('does not remember a failed derivation', async () => {
    const { fn, calls } = controlledPbkdf2();
    const deriver = new KeyDeriver({ pbkdf2: fn });
    const failing = deriver.derive('pw', SALT, 50);
    await tick();
    calls[0]?.finish(new Error('thread pool exploded'));
    await assert.rejects(failing, /thread pool exploded/);
    assert.equal(deriver.cachedCount, 0);
    const retry = deriver.derive('pw', SALT, 50);
    await tick();
    calls[1]?.finish();
    assert.equal((await retry).length, 32);
    assert.equal(deriver.cachedCount, 1);
  });

  it('evicts the least recently used entry beyond its bound', async () => {
    const deriver = new KeyDeriver({ maxEntries: 2 });
    await deriver.derive('a', SALT, 10);
    await deriver.derive('b', SALT, 10);
    await deriver.derive('a', SALT, 10); // a is now the most recent
    await deriver.derive('c', SALT, 10); // evicts b
    assert.equal(deriver.cachedCount, 2);
    assert.equal(deriver.derivationCount, 3);
    await deriver.derive('a', SALT, 10);
    assert.equal(deriver.derivationCount, 3, 'a was kept');
    await deriver.derive('b', SALT, 10);
    assert.equal(deriver.derivationCount, 4, 'b had been evicted');
    assert.equal(new KeyDeriver().cachedCount, 0);
    assert.throws(() => new KeyDeriver({ maxEntries: 0 }), RangeError);
  });

  it('refuses iteration counts Node cannot run, before deriving anything', async () => {
    const deriver = new KeyDeriver();
    for (const iterations of [0, -5, 1.5, Number.NaN, 2 ** 31]) {
      await assert.rejects(deriver.derive('pw', SALT, iterations), RangeError);
    }
    assert.equal(deriver.derivationCount, 0);
  });

  it('does not block the event loop while deriving', async () => {
    const deriver = new KeyDeriver();
    const started = performance.now();
    const pending = deriver.derive('pw', SALT, 300_000);
    const synchronousMs = performance.now() - started;
    let ticks = 0;
    let done = false;
    const spin = (): void => {
      ticks++;
      if (!done) setImmediate(spin);
    };
    setImmediate(spin);
    await pending;
    done = true;
    assert.ok(synchronousMs < 20, `derive() returned after ${synchronousMs.toFixed(1)} ms`);
    assert.ok(ticks > 1, `the loop turned ${ticks} times during the derivation`);
  });
});
