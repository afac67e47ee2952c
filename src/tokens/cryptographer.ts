import { randomBytes } from 'node:crypto';
import { ErrorCode, MailbridgeError } from '../errors.ts';
import {
  decodePlaintext,
  type FernetEncryptOptions,
  type FernetToken,
  fernetEncrypt,
  fernetOpen,
  fernetSeal,
  parseFernetToken,
} from './fernet.ts';

/**
 * email-oauth2-proxy's `Cryptographer`: the cached tokens of an account are Fernet tokens whose keys are
 * PBKDF2-HMAC-SHA256(client password, token_salt, n) for every n in sorted({1_200_000, token_iterations, 100_000})
 * descending; a value is decrypted by trying each key in turn (MultiFernet).
 */

/** What the Python tool has used since 2025-03 (870,000 from 2023-10, 1,000,000 from 2025-02). */
export const CURRENT_ITERATIONS = 1_200_000;
/** Assumed when token_iterations is missing (files written before 2023-10-17). */
export const LEGACY_ITERATIONS = 100_000;

const SALT_BYTES = 16;
const MAX_ITERATIONS = 2 ** 31 - 1;

/** What derives the keys; KeyDeriver in production, a table of fixture keys in tests. */
export interface KeySource {
  derive(password: string, salt: Buffer, iterations: number): Promise<Buffer>;
}

/** Where the salt came from: token_salt, a new one because there was none, or a new one replacing a bad value. */
export type SaltOrigin = 'stored' | 'missing' | 'invalid';

export interface CryptographerOptions {
  deriver: KeySource;
  /** The password the mail client logged in with. */
  password: string;
  /** token_salt as stored: standard base64 of 16 random bytes. */
  salt?: string | undefined;
  /** token_iterations as stored; LEGACY_ITERATIONS when absent. */
  iterations?: number | undefined;
  /** Source of a new salt; random by default. */
  newSalt?: () => Buffer;
}

const BASE64_VALUES = new Map(
  [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].map((c, i) => [c.charCodeAt(0), i]),
);

/**
 * Python's `base64.b64decode(text.encode('utf-8'))` (binascii.a2b_base64 with strict_mode off), which is how the
 * proxy reads token_salt: bytes outside the standard alphabet (including '-', '_', spaces, non-ASCII) are skipped,
 * padding that completes a quad ends the input, and leftover characters are an error (undefined here).
 */
export function decodePythonBase64(text: string): Buffer | undefined {
  const out: number[] = [];
  let quadPos = 0;
  let leftover = 0;
  let pads = 0;
  for (const byte of Buffer.from(text, 'utf8')) {
    if (byte === 0x3d) {
      if (quadPos >= 2) {
        pads++;
        if (quadPos + pads >= 4) return Buffer.from(out);
      }
      continue;
    }
    const value = BASE64_VALUES.get(byte);
    if (value === undefined) continue;
    pads = 0;
    if (quadPos === 0) leftover = value;
    else if (quadPos === 1) {
      out.push(((leftover << 2) | (value >> 4)) & 0xff);
      leftover = value & 0x0f;
    } else if (quadPos === 2) {
      out.push(((leftover << 4) | (value >> 2)) & 0xff);
      leftover = value & 0x03;
    } else out.push(((leftover << 6) | value) & 0xff);
    quadPos = (quadPos + 1) % 4;
  }
  return quadPos === 0 ? Buffer.from(out) : undefined;
}

function resolveSalt(
  stored: string | undefined,
  newSalt: () => Buffer,
): { salt: Buffer; origin: SaltOrigin } {
  if (stored === undefined || stored === '') return { salt: newSalt(), origin: 'missing' };
  const decoded = decodePythonBase64(stored);
  // The proxy uses any non-empty decoding as the salt, whatever its length (`if not self._salt: os.urandom(16)`).
  if (decoded === undefined || decoded.length === 0) return { salt: newSalt(), origin: 'invalid' };
  return { salt: decoded, origin: 'stored' };
}

function checkIterations(iterations: number): void {
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS) {
    throw new MailbridgeError(
      ErrorCode.CONFIG_INVALID,
      `token_iterations '${iterations}' is not a whole number from 1 to ${MAX_ITERATIONS}; remove it to use the default`,
    );
  }
}

interface DerivedKey {
  iterations: number;
  key: Buffer;
}

export class Cryptographer {
  readonly saltOrigin: SaltOrigin;
  readonly #salt: Buffer;
  /** Decryption order: iteration counts descending, as the Python tool's MultiFernet. */
  readonly #keys: readonly DerivedKey[];
  readonly #current: Buffer;

  private constructor(salt: Buffer, saltOrigin: SaltOrigin, keys: readonly DerivedKey[]) {
    this.#salt = salt;
    this.saltOrigin = saltOrigin;
    this.#keys = keys;
    const current = keys.find((k) => k.iterations === CURRENT_ITERATIONS);
    if (current === undefined) throw new Error('unreachable: the current iteration count is always derived');
    this.#current = current.key;
  }

  static async create(options: CryptographerOptions): Promise<Cryptographer> {
    const { salt, origin } = resolveSalt(options.salt, options.newSalt ?? (() => randomBytes(SALT_BYTES)));
    const stored = options.iterations ?? LEGACY_ITERATIONS;
    checkIterations(stored);
    const counts = [...new Set([CURRENT_ITERATIONS, stored, LEGACY_ITERATIONS])].sort((a, b) => b - a);
    // Two or three independent PBKDF2 runs: in parallel on the thread pool, not one after the other.
    const keys = await Promise.all(counts.map((n) => options.deriver.derive(options.password, salt, n)));
    return new Cryptographer(
      salt,
      origin,
      counts.map((iterations, i) => ({ iterations, key: keys[i] as Buffer })),
    );
  }

  /** token_salt to store: standard base64 with padding, as Python's base64.b64encode. */
  get saltBase64(): string {
    return this.#salt.toString('base64');
  }

  /** token_iterations to store alongside anything encrypt() or reencrypt() produced. */
  get iterations(): number {
    return CURRENT_ITERATIONS;
  }

  /** The iteration counts whose keys decrypt, in the order they are tried. */
  get iterationOrder(): readonly number[] {
    return this.#keys.map((k) => k.iterations);
  }

  /** Encrypts with the CURRENT_ITERATIONS key. */
  encrypt(plaintext: string, options?: FernetEncryptOptions): string {
    return fernetEncrypt(this.#current, plaintext, options);
  }

  /**
   * Decrypts with whichever key works. TOKEN_WRONG_PASSWORD when none does, including for a value that is not a
   * Fernet token at all: Python's MultiFernet raises the same InvalidToken for both, and the proxy treats that as a
   * wrong password. The message tells the two apart.
   */
  decrypt(token: string): string {
    return decodePlaintext(this.#open(token).plaintext);
  }

  /**
   * Whether the value decrypts, but not with the current key: the caller then re-encrypts every stored value with
   * reencrypt() and stores token_iterations = iterations (the Python tool's requires_rotation()). False for a value
   * no key decrypts.
   */
  needsRotation(token: string): boolean {
    try {
      return this.#open(token).key !== this.#current;
    } catch {
      return false;
    }
  }

  /**
   * MultiFernet.rotate(): the same plaintext and the same Fernet timestamp, a fresh IV, the current key.
   * TOKEN_WRONG_PASSWORD when no key decrypts the value.
   */
  reencrypt(token: string, options: { iv?: Buffer } = {}): string {
    const { plaintext, parsed } = this.#open(token);
    return fernetSeal(this.#current, plaintext, parsed.timestamp, options.iv);
  }

  #open(token: string): { plaintext: Buffer; key: Buffer; parsed: FernetToken } {
    let parsed: FernetToken;
    try {
      parsed = parseFernetToken(token);
    } catch (error: unknown) {
      throw new MailbridgeError(
        ErrorCode.TOKEN_WRONG_PASSWORD,
        `stored value is not a fernet token (${(error as Error).message}), so no password can decrypt it`,
        { cause: error },
      );
    }
    for (const { key } of this.#keys) {
      try {
        return { plaintext: fernetOpen(key, parsed), key, parsed };
      } catch {
        // MultiFernet: try the next key.
      }
    }
    throw new MailbridgeError(
      ErrorCode.TOKEN_WRONG_PASSWORD,
      `stored value does not decrypt with this password (keys for ${this.#keys.map((k) => k.iterations).join(', ')} ` +
        'PBKDF2 iterations tried)',
    );
  }
}
