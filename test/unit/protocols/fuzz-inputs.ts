/**
 * Generated client input for the pre-authentication parsers, shared by the in-process fuzz test and the run
 * against the live program. Every input is reproducible from the seed. Valid inputs carry the credentials
 * they encode, so the parsers are checked against the generator (a differential test), not only for not
 * crashing; mutated and random inputs check that nothing but the documented errors ever comes out.
 */

/** mulberry32: small, fast, and the same sequence on every machine for a given seed. */
export class Rng {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(below: number): number {
    return Math.floor(this.next() * below);
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
}

export interface Credentials {
  username: string;
  password: string;
}

export interface GeneratedInput {
  bytes: Buffer;
  /** How it was made, for failure messages and statistics. */
  kind: string;
  /** For untouched valid logins: what the parser must find. */
  expected?: Credentials;
}

const ATOM_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_@!#$&'+,/:;<=>?^`|~";
/** Pieces of user names and passwords: specials of every protocol, UTF-8, and a few multi-byte runs. */
const SECRET_PIECES = [
  'a',
  'Z',
  '7',
  ' ',
  '  ',
  '"',
  '\\',
  '{',
  '}',
  '{3}',
  '(',
  ')',
  '%',
  '*',
  '+',
  '=',
  '/',
  ':',
  '@',
  '\t',
  'é',
  'ß',
  '€',
  '日本',
  '😀',
  'correct horse',
  'user@example.test',
  '$&',
];
const ASCII_PIECES = SECRET_PIECES.filter((piece) => /^[\x20-\x7e]+$/.test(piece));

/** Verbs of all three protocols, so each parser also sees the others' commands. */
const VERBS = [
  'LOGIN',
  'login',
  'AUTHENTICATE',
  'CAPABILITY',
  'NOOP',
  'STARTTLS',
  'LOGOUT',
  'ID',
  'SELECT',
  'ENABLE',
  'USER',
  'PASS',
  'AUTH',
  'CAPA',
  'STLS',
  'QUIT',
  'APOP',
  'EHLO',
  'HELO',
  'MAIL',
  'RCPT',
  'DATA',
  'BDAT',
  'RSET',
  'PLAIN',
  'LOGIN',
  'XOAUTH2',
];
const SOUP = [
  ...VERBS,
  ' ',
  ' ',
  '\r\n',
  '\r\n',
  '\n',
  '\r',
  '\0',
  '"',
  '\\',
  '{',
  '}',
  '+',
  '*',
  '=',
  '{0}',
  '{0+}',
  '{5}',
  '{5+}',
  '{99999999999}',
  '{4294967296+}',
  'a1',
  'mb1',
  ']',
  '[',
  '(',
  ')',
  '\xff',
  '\x80',
  'AGFsaWNlAHNlY3JldA==',
  '=',
  '.',
];

export function secret(rng: Rng, options: { ascii?: boolean; nonEmpty?: boolean } = {}): string {
  const pieces = options.ascii ? ASCII_PIECES : SECRET_PIECES;
  const count = rng.int(8) + (options.nonEmpty ? 1 : 0);
  let text = '';
  for (let i = 0; i < count; i += 1) text += rng.pick(pieces);
  return text;
}

function tag(rng: Rng): string {
  const length = rng.int(6) + 1;
  let text = '';
  for (let i = 0; i < length; i += 1) text += rng.pick(['a', 'A', '1', '.', ']', '-', 'x', '9', '_']);
  return text;
}

function eol(rng: Rng): string {
  return rng.chance(0.9) ? '\r\n' : '\n';
}

/** One IMAP astring argument as a client may encode it: atom, quoted string, or either kind of literal. */
function imapArgument(rng: Rng, value: string): Buffer[] {
  const atomSafe = value.length > 0 && [...value].every((char) => ATOM_CHARS.includes(char));
  const quotedSafe = !/[\r\n\0]/.test(value);
  const choice = rng.int(atomSafe ? 4 : 3);
  if (choice === 3) return [Buffer.from(value, 'latin1')];
  if (choice === 2 && quotedSafe) {
    return [Buffer.from(`"${value.replace(/[\\"]/g, (char) => `\\${char}`)}"`, 'utf8')];
  }
  const data = Buffer.from(value, 'utf8');
  const marker = rng.chance(0.5) ? `{${data.length}}` : `{${data.length}+}`;
  // The marker ends the line; the literal's bytes follow it directly.
  return [Buffer.from(`${marker}\r\n`), data];
}

function imapLogin(rng: Rng): GeneratedInput {
  const credentials = { username: secret(rng, { nonEmpty: true }), password: secret(rng) };
  const parts: Buffer[] = [Buffer.from(`${tag(rng)} ${rng.pick(['LOGIN', 'login', 'Login'])} `)];
  parts.push(...imapArgument(rng, credentials.username), Buffer.from(' '));
  parts.push(...imapArgument(rng, credentials.password), Buffer.from(eol(rng)));
  return { bytes: Buffer.concat(parts), kind: 'imap-login', expected: credentials };
}

function plainResponse(credentials: Credentials, authzid = ''): string {
  return Buffer.from(`${authzid}\0${credentials.username}\0${credentials.password}`, 'utf8').toString(
    'base64',
  );
}

/** Credentials SASL PLAIN can carry: no NUL (the separator). */
function saslCredentials(rng: Rng): Credentials {
  return { username: secret(rng, { nonEmpty: true }), password: secret(rng, { nonEmpty: true }) };
}

function imapAuthenticatePlain(rng: Rng): GeneratedInput {
  const credentials = saslCredentials(rng);
  const response = plainResponse(credentials, rng.chance(0.2) ? 'someone' : '');
  const t = tag(rng);
  const text = rng.chance(0.5)
    ? `${t} AUTHENTICATE PLAIN ${response}${eol(rng)}`
    : `${t} AUTHENTICATE PLAIN${eol(rng)}${response}${eol(rng)}`;
  return { bytes: Buffer.from(text), kind: 'imap-authenticate-plain', expected: credentials };
}

function imapOther(rng: Rng): GeneratedInput {
  const t = tag(rng);
  const lines = [
    `${t} CAPABILITY`,
    `${t} NOOP`,
    `${t} ID ("name" "fuzz" "version" "1")`,
    `${t} ENABLE UTF8=ACCEPT`,
    `${t} AUTHENTICATE XOAUTH2`,
    `${t} AUTHENTICATE PLAIN`,
    `${t} SELECT {5+}\r\nINBOX`,
    `${t} ID {3}\r\nabc`,
    '*',
    '',
  ];
  const count = rng.int(4) + 1;
  let text = '';
  for (let i = 0; i < count; i += 1) text += `${rng.pick(lines)}${eol(rng)}`;
  return { bytes: Buffer.from(text, 'latin1'), kind: 'imap-other' };
}

function pop3Valid(rng: Rng): GeneratedInput {
  if (rng.chance(0.5)) {
    // USER/PASS take the rest of the line as it is: spaces included, no CR or LF. ASCII only: POP3 lines are
    // read as latin1 (see the note in fuzz.test.ts).
    const credentials = {
      username: secret(rng, { ascii: true, nonEmpty: true }),
      password: secret(rng, { ascii: true, nonEmpty: true }),
    };
    return {
      bytes: Buffer.from(`USER ${credentials.username}${eol(rng)}PASS ${credentials.password}${eol(rng)}`),
      kind: 'pop3-user-pass',
      expected: credentials,
    };
  }
  const credentials = saslCredentials(rng);
  const response = plainResponse(credentials);
  const text = rng.chance(0.5)
    ? `AUTH PLAIN ${response}${eol(rng)}`
    : `AUTH PLAIN${eol(rng)}${response}${eol(rng)}`;
  return { bytes: Buffer.from(text), kind: 'pop3-auth-plain', expected: credentials };
}

function smtpValid(rng: Rng): GeneratedInput {
  const credentials = saslCredentials(rng);
  const ehlo = `${rng.pick(['EHLO', 'ehlo', 'HELO'])} client.example.test${eol(rng)}`;
  const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');
  const variants = [
    `AUTH PLAIN ${plainResponse(credentials)}${eol(rng)}`,
    `AUTH PLAIN${eol(rng)}${plainResponse(credentials)}${eol(rng)}`,
    `AUTH LOGIN${eol(rng)}${b64(credentials.username)}${eol(rng)}${b64(credentials.password)}${eol(rng)}`,
    `AUTH LOGIN ${b64(credentials.username)}${eol(rng)}${b64(credentials.password)}${eol(rng)}`,
  ];
  return {
    bytes: Buffer.from(`${ehlo}${rng.pick(variants)}`),
    kind: 'smtp-auth',
    expected: credentials,
  };
}

function lineOther(rng: Rng): GeneratedInput {
  const lines = [
    'CAPA',
    'NOOP',
    'STLS',
    'STARTTLS',
    'QUIT',
    'RSET',
    'AUTH',
    'AUTH XOAUTH2',
    'AUTH PLAIN *',
    'AUTH PLAIN =',
    'APOP user 0123456789abcdef',
    'MAIL FROM:<a@example.test>',
    'RCPT TO:<b@example.test>',
    'DATA',
    'BDAT 10 LAST',
    'EHLO [127.0.0.1]',
    'HELP',
    'VRFY postmaster',
    'USER',
    'PASS',
    '*',
    '',
  ];
  const count = rng.int(5) + 1;
  let text = '';
  for (let i = 0; i < count; i += 1) text += `${rng.pick(lines)}${eol(rng)}`;
  return { bytes: Buffer.from(text, 'latin1'), kind: 'line-other' };
}

function garbage(rng: Rng): GeneratedInput {
  if (rng.chance(0.4)) {
    const length = rng.int(600);
    const bytes = Buffer.alloc(length);
    for (let i = 0; i < length; i += 1) bytes[i] = rng.int(256);
    return { bytes, kind: 'random-bytes' };
  }
  const count = rng.int(60);
  let text = '';
  for (let i = 0; i < count; i += 1) text += rng.pick(SOUP);
  return { bytes: Buffer.from(text, 'latin1'), kind: 'token-soup' };
}

function oversized(rng: Rng, lineLimit: number): GeneratedInput {
  const kind = rng.int(4);
  if (kind === 0) return { bytes: Buffer.alloc(lineLimit + 1 + rng.int(64), 0x61), kind: 'long-line' };
  if (kind === 1) {
    const line = Buffer.concat([Buffer.alloc(lineLimit - rng.int(3), 0x62), Buffer.from('\r\n')]);
    return { bytes: line, kind: 'line-at-limit' };
  }
  if (kind === 2) {
    return {
      bytes: Buffer.from(`a1 LOGIN {${lineLimit * 4 + rng.int(1000)}${rng.chance(0.5) ? '+' : ''}}\r\n`),
      kind: 'huge-literal',
    };
  }
  return { bytes: Buffer.from('NOOP\r\n'.repeat(rng.int(200) + 1)), kind: 'many-lines' };
}

/** A valid input with a few bytes flipped, inserted, deleted, duplicated or cut off. */
function mutate(rng: Rng, input: GeneratedInput): GeneratedInput {
  let bytes = Buffer.from(input.bytes);
  const mutations = rng.int(4) + 1;
  for (let i = 0; i < mutations; i += 1) {
    const at = rng.int(bytes.length + 1);
    const interesting = [0x0d, 0x0a, 0x00, 0x7b, 0x7d, 0x2b, 0x22, 0x5c, 0x20, 0x30, 0x39, 0xff];
    switch (rng.int(5)) {
      case 0:
        if (at < bytes.length) bytes[at] = rng.chance(0.5) ? rng.int(256) : rng.pick(interesting);
        break;
      case 1:
        bytes = Buffer.concat([
          bytes.subarray(0, at),
          Buffer.from([rng.pick(interesting)]),
          bytes.subarray(at),
        ]);
        break;
      case 2:
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1 + rng.int(4))]);
        break;
      case 3:
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(rng.int(at + 1))]);
        break;
      default:
        bytes = bytes.subarray(0, at);
    }
  }
  return { bytes, kind: `mutated-${input.kind}` };
}

export function imapInput(rng: Rng, lineLimit: number): GeneratedInput {
  const roll = rng.next();
  if (roll < 0.3) return imapLogin(rng);
  if (roll < 0.4) return imapAuthenticatePlain(rng);
  if (roll < 0.5) return imapOther(rng);
  if (roll < 0.8) return mutate(rng, rng.chance(0.7) ? imapLogin(rng) : imapOther(rng));
  if (roll < 0.95) return garbage(rng);
  return oversized(rng, lineLimit);
}

export function pop3Input(rng: Rng, lineLimit: number): GeneratedInput {
  const roll = rng.next();
  if (roll < 0.35) return pop3Valid(rng);
  if (roll < 0.5) return lineOther(rng);
  if (roll < 0.8) return mutate(rng, rng.chance(0.7) ? pop3Valid(rng) : lineOther(rng));
  if (roll < 0.95) return garbage(rng);
  return oversized(rng, lineLimit);
}

export function smtpInput(rng: Rng, lineLimit: number): GeneratedInput {
  const roll = rng.next();
  if (roll < 0.35) return smtpValid(rng);
  if (roll < 0.5) return lineOther(rng);
  if (roll < 0.8) return mutate(rng, rng.chance(0.7) ? smtpValid(rng) : lineOther(rng));
  if (roll < 0.95) return garbage(rng);
  return oversized(rng, lineLimit);
}

/** The input cut into pieces at random places, as TCP may deliver it. */
export function chunked(rng: Rng, bytes: Buffer): Buffer[] {
  if (bytes.length === 0 || rng.chance(0.3)) return [bytes];
  const chunks: Buffer[] = [];
  let at = 0;
  while (at < bytes.length) {
    const size = rng.chance(0.3) ? 1 : rng.int(64) + 1;
    chunks.push(bytes.subarray(at, at + size));
    at += size;
  }
  return chunks;
}
