import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ErrorCode, MailbridgeError } from '../errors.ts';

/**
 * Fernet (https://github.com/fernet/spec/blob/master/Spec.md, version 0x80), byte-compatible with Python
 * `cryptography`'s Fernet, which email-oauth2-proxy uses for its cached tokens:
 *
 *   token = base64url( 0x80 ‖ timestamp (u64 BE, Unix s) ‖ IV (16) ‖ AES-128-CBC/PKCS7 ciphertext ‖ HMAC-SHA256 )
 *
 * with the 32-byte key split into the signing key (first 16 bytes) and the encryption key (last 16).
 */

const VERSION = 0x80;
const TIMESTAMP_BYTES = 8;
const IV_BYTES = 16;
const BLOCK_BYTES = 16;
const HMAC_BYTES = 32;
const HEADER_BYTES = 1 + TIMESTAMP_BYTES + IV_BYTES;
/** The shortest token: an empty plaintext still pads to one block. */
const MIN_TOKEN_BYTES = HEADER_BYTES + BLOCK_BYTES + HMAC_BYTES;
const MAX_TIMESTAMP = 2n ** 64n - 1n;

/** A token whose structure is valid; its signature has not been checked. */
export interface FernetToken {
  readonly bytes: Buffer;
  readonly timestamp: bigint;
}

function invalid(reason: string): MailbridgeError {
  return new MailbridgeError(ErrorCode.TOKEN_INVALID, `fernet token ${reason}`);
}

function splitKey(key: Buffer): { signing: Buffer; encryption: Buffer } {
  if (key.length !== 32) throw new TypeError(`a fernet key is 32 bytes, not ${key.length}`);
  return { signing: key.subarray(0, 16), encryption: key.subarray(16, 32) };
}

// Python decodes with urlsafe_b64decode, which needs the '=' padding; Node's 'base64url' encoding omits it, so the
// padding is put back here (Python raises "Incorrect padding" on tokens without it).
function encodeBase64UrlPadded(bytes: Buffer): string {
  return bytes.toString('base64').replaceAll('+', '-').replaceAll('/', '_');
}

// Node's base64 decoder silently skips characters it does not know; a token is checked character by character
// first. Both alphabets are accepted ('+' and '/' survive Python's urlsafe_b64decode too), padding is optional.
function decodeBase64Url(token: string): Buffer | undefined {
  let end = token.length;
  while (end > 0 && token.charCodeAt(end - 1) === 0x3d) end--;
  const padding = token.length - end;
  if (padding > 2 || (padding > 0 && token.length % 4 !== 0) || end % 4 === 1) return undefined;
  for (let i = 0; i < end; i++) {
    const c = token.charCodeAt(i);
    const ok =
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x30 && c <= 0x39) ||
      c === 0x2d ||
      c === 0x5f ||
      c === 0x2b ||
      c === 0x2f;
    if (!ok) return undefined;
  }
  return Buffer.from(token.slice(0, end), 'base64');
}

/** Checks a token's structure (encoding, version, length) and reads its timestamp, without any key. */
export function parseFernetToken(token: string): FernetToken {
  const bytes = decodeBase64Url(token);
  if (bytes === undefined) throw invalid('is not valid base64url text');
  if (bytes.length === 0 || bytes[0] !== VERSION) {
    throw invalid(
      `has version byte ${bytes.length === 0 ? 'none' : `0x${bytes[0]?.toString(16)}`} (expected 0x80)`,
    );
  }
  if (bytes.length < MIN_TOKEN_BYTES) throw invalid(`is too short (${bytes.length} bytes)`);
  if ((bytes.length - HEADER_BYTES - HMAC_BYTES) % BLOCK_BYTES !== 0) {
    throw invalid('has a ciphertext that is not a whole number of AES blocks');
  }
  return { bytes, timestamp: bytes.readBigUInt64BE(1) };
}

/** Whether `key` signed the token; constant-time, so a forger learns nothing from timing. */
export function fernetSignatureMatches(key: Buffer, token: FernetToken): boolean {
  const { signing } = splitKey(key);
  const signed = token.bytes.subarray(0, token.bytes.length - HMAC_BYTES);
  const expected = createHmac('sha256', signing).update(signed).digest();
  return timingSafeEqual(expected, token.bytes.subarray(token.bytes.length - HMAC_BYTES));
}

/** Verifies and decrypts a parsed token to its plaintext bytes; TOKEN_INVALID for a wrong key or bad padding. */
export function fernetOpen(key: Buffer, token: FernetToken): Buffer {
  if (!fernetSignatureMatches(key, token))
    throw invalid('signature does not match (wrong key, or altered token)');
  const { encryption } = splitKey(key);
  const iv = token.bytes.subarray(1 + TIMESTAMP_BYTES, HEADER_BYTES);
  const ciphertext = token.bytes.subarray(HEADER_BYTES, token.bytes.length - HMAC_BYTES);
  try {
    const decipher = createDecipheriv('aes-128-cbc', encryption, iv);
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch (error: unknown) {
    // Only reachable with the right signing key: a token produced by a broken encoder, not a wrong password.
    throw new MailbridgeError(ErrorCode.TOKEN_INVALID, 'fernet token has invalid PKCS7 padding', {
      cause: error,
    });
  }
}

/** Builds a token from its parts (what Python's `_encrypt_from_parts` does); `iv` defaults to 16 random bytes. */
export function fernetSeal(
  key: Buffer,
  plaintext: Buffer,
  timestamp: bigint,
  iv: Buffer = randomBytes(IV_BYTES),
): string {
  const { signing, encryption } = splitKey(key);
  if (iv.length !== IV_BYTES) throw new TypeError(`a fernet IV is ${IV_BYTES} bytes, not ${iv.length}`);
  if (timestamp < 0n || timestamp > MAX_TIMESTAMP)
    throw new RangeError('a fernet timestamp is an unsigned 64-bit value');
  const cipher = createCipheriv('aes-128-cbc', encryption, iv);
  const header = Buffer.alloc(1 + TIMESTAMP_BYTES);
  header[0] = VERSION;
  header.writeBigUInt64BE(timestamp, 1);
  const body = Buffer.concat([header, iv, cipher.update(plaintext), cipher.final()]);
  const mac = createHmac('sha256', signing).update(body).digest();
  return encodeBase64UrlPadded(Buffer.concat([body, mac]));
}

export interface FernetEncryptOptions {
  /** Unix seconds to record in the token; now by default. */
  now?: number;
  /** Fixed IV for test vectors only; random by default. */
  iv?: Buffer;
}

/** Fernet.encrypt(plaintext.encode('utf-8')).decode() */
export function fernetEncrypt(key: Buffer, plaintext: string, options: FernetEncryptOptions = {}): string {
  const now = options.now ?? Date.now() / 1000;
  if (!Number.isFinite(now) || now < 0)
    throw new RangeError('a fernet timestamp is a non-negative number of seconds');
  // Python stores int(time.time()): whole seconds, rounded down.
  return fernetSeal(key, Buffer.from(plaintext, 'utf8'), BigInt(Math.floor(now)), options.iv);
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** UTF-8 text of a verified plaintext; TOKEN_INVALID when it is not UTF-8 (Python raises UnicodeDecodeError). */
export function decodePlaintext(plaintext: Buffer): string {
  try {
    return strictUtf8.decode(plaintext);
  } catch (error: unknown) {
    throw new MailbridgeError(ErrorCode.TOKEN_INVALID, 'fernet token plaintext is not UTF-8 text', {
      cause: error,
    });
  }
}

/**
 * Fernet.decrypt(token).decode('utf-8') without a TTL, like email-oauth2-proxy (the timestamp is never checked).
 * Throws TOKEN_INVALID for anything Python's InvalidToken covers: bad base64, wrong version, too short, signature
 * mismatch, bad padding.
 */
export function fernetDecrypt(key: Buffer, token: string): string {
  return decodePlaintext(fernetOpen(key, parseFernetToken(token)));
}
