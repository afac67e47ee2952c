import { createHmac, pbkdf2, randomBytes } from 'node:crypto';

/**
 * PBKDF2-HMAC-SHA256 key derivation as email-oauth2-proxy does it (32 bytes, the client's password as UTF-8), with
 * a small cache. The Python tool derives two or three keys at every login (≈0.15-0.25 s each at 1.2 M iterations,
 * serialised under its GIL); here derivations run on libuv's thread pool and repeated logins reuse the result.
 */

export type Pbkdf2 = (
  password: Buffer,
  salt: Buffer,
  iterations: number,
  keylen: number,
  digest: string,
  callback: (error: Error | null, derived: Buffer) => void,
) => void;

export interface KeyDeriverOptions {
  /** Derived keys kept; the least recently used goes first. Each entry is ~100 bytes. */
  maxEntries?: number;
  /** Replaced in tests to count or delay derivations. */
  pbkdf2?: Pbkdf2;
}

const KEY_BYTES = 32;
/** Node's pbkdf2 takes a signed 32-bit iteration count. */
const MAX_ITERATIONS = 2 ** 31 - 1;

export class KeyDeriver {
  readonly #maxEntries: number;
  readonly #pbkdf2: Pbkdf2;
  // A per-process secret keys the cache index, so the index is not a fast unsalted hash of the password that a
  // memory dump could brute-force offline more cheaply than PBKDF2 itself.
  readonly #indexKey = randomBytes(32);
  /** Map order is recency order: a hit moves its entry to the end, eviction takes from the front. */
  readonly #entries = new Map<string, Promise<Buffer>>();
  #derivations = 0;

  constructor(options: KeyDeriverOptions = {}) {
    const maxEntries = options.maxEntries ?? 256;
    if (!Number.isInteger(maxEntries) || maxEntries < 1)
      throw new RangeError('maxEntries must be a positive integer');
    this.#maxEntries = maxEntries;
    this.#pbkdf2 = options.pbkdf2 ?? pbkdf2;
  }

  /** Derived keys held (or being derived) right now. */
  get cachedCount(): number {
    return this.#entries.size;
  }

  /** PBKDF2 runs started since creation; a cache hit or a shared in-flight request does not count. */
  get derivationCount(): number {
    return this.#derivations;
  }

  /** Resolves to a fresh copy of the 32-byte key; identical concurrent requests share one derivation. */
  async derive(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
    if (!Number.isInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS) {
      throw new RangeError(
        `PBKDF2 iterations must be a whole number from 1 to ${MAX_ITERATIONS}, not ${iterations}`,
      );
    }
    const passwordBytes = Buffer.from(password, 'utf8');
    const index = this.#index(passwordBytes, salt, iterations);
    let entry = this.#entries.get(index);
    if (entry === undefined) {
      entry = this.#run(passwordBytes, salt, iterations);
      // A failed derivation is not remembered: the next login tries again.
      entry.catch(() => {
        if (this.#entries.get(index) === entry) this.#entries.delete(index);
      });
    } else {
      this.#entries.delete(index);
    }
    this.#entries.set(index, entry);
    this.#evict();
    return Buffer.from(await entry);
  }

  /** Forgets every derived key (e.g. on reload, or when an account's tokens are deleted). */
  clear(): void {
    this.#entries.clear();
  }

  #index(password: Buffer, salt: Buffer, iterations: number): string {
    const lengths = Buffer.alloc(12);
    lengths.writeUInt32BE(salt.length, 0);
    lengths.writeUInt32BE(iterations, 4);
    lengths.writeUInt32BE(password.length, 8);
    return createHmac('sha256', this.#indexKey)
      .update(lengths)
      .update(salt)
      .update(password)
      .digest('base64');
  }

  #run(password: Buffer, salt: Buffer, iterations: number): Promise<Buffer> {
    this.#derivations++;
    return new Promise((resolve, reject) => {
      this.#pbkdf2(password, salt, iterations, KEY_BYTES, 'sha256', (error, derived) => {
        if (error) reject(error);
        else resolve(derived);
      });
    });
  }

  #evict(): void {
    for (const index of this.#entries.keys()) {
      if (this.#entries.size <= this.#maxEntries) return;
      this.#entries.delete(index);
    }
  }
}
