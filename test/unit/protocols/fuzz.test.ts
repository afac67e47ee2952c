import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { Limits } from '../../../src/net/limits.ts';
import { LineBuffer, LineTooLongError } from '../../../src/net/line-buffer.ts';
import {
  ArgumentError,
  type CommandPart,
  loginCredentials,
  parseAstrings,
} from '../../../src/protocols/imap/arguments.ts';
import {
  type ClientFrame,
  CommandFramer,
  LiteralTooLargeError,
} from '../../../src/protocols/imap/command-framer.ts';
import { decodePlain } from '../../../src/sasl/plain.ts';
import {
  type Credentials,
  chunked,
  type GeneratedInput,
  imapInput,
  pop3Input,
  Rng,
  smtpInput,
} from './fuzz-inputs.ts';

/**
 * A bounded fuzz run of the pre-authentication parsers: 100,000 generated inputs per protocol, each delivered
 * in randomly cut pieces, through the same steps the sessions take (IMAP: command framer, then the LOGIN
 * astring parser or SASL PLAIN; POP3 and SMTP: line framing, verb split, SASL PLAIN / AUTH LOGIN decoding).
 *
 * Checked for every input: only the documented errors come out (LineTooLongError, LiteralTooLargeError,
 * ArgumentError; decodePlain never throws); no byte is lost or duplicated by framing whatever the cuts; no
 * line is longer than the limit and buffered bytes stay within it; and every untouched valid login yields
 * exactly the credentials the generator encoded. Small limits are mixed in so the limit paths run often.
 *
 * FUZZ_SEED=<n> replays a run; FUZZ_INPUTS=<n> changes its length.
 *
 * Note: POP3 USER/PASS lines are read as latin1 (line.text), while IMAP and SASL decode UTF-8, so the
 * generator gives USER/PASS ASCII credentials only; a non-ASCII POP3 password would become a different
 * encryption key than the same password over IMAP (reported for the POP3 session's owner).
 */
const INPUTS = Number(process.env.FUZZ_INPUTS ?? 100_000);
const SEED = Number(process.env.FUZZ_SEED ?? 20_261_129);
const LINE_LIMITS = [Limits.preAuthLineBytes, 256, 40];
const LITERAL_LIMITS = [Limits.preAuthLiteralBytes, 100, 8];

/** The COMMAND pattern of the IMAP session (tag SP verb [SP rest]). */
const IMAP_COMMAND = /^([^\s(){%*"\\+]+) ([A-Za-z]+)(?: (.*))?$/;

interface Stats {
  inputs: number;
  kinds: Map<string, number>;
  logins: number;
  checkedAgainstGenerator: number;
  limitErrors: number;
  argumentErrors: number;
}

function newStats(): Stats {
  return {
    inputs: 0,
    kinds: new Map(),
    logins: 0,
    checkedAgainstGenerator: 0,
    limitErrors: 0,
    argumentErrors: 0,
  };
}

function count(stats: Stats, input: GeneratedInput): void {
  stats.inputs += 1;
  const family = input.kind.replace(/^mutated-.*/, 'mutated');
  stats.kinds.set(family, (stats.kinds.get(family) ?? 0) + 1);
}

function report(t: TestContext, name: string, stats: Stats): void {
  const kinds = [...stats.kinds].map(([kind, n]) => `${kind}=${n}`).join(' ');
  t.diagnostic(
    `${name}: ${stats.inputs} inputs (seed ${SEED}); ${stats.logins} logins parsed, ${stats.checkedAgainstGenerator} equal to the generator's; ${stats.limitErrors} limit errors, ${stats.argumentErrors} argument errors; ${kinds}`,
  );
}

/** Runs `check` on every generated input; a failure names the seed, the input number and its bytes. */
function fuzz(
  t: TestContext,
  name: string,
  generate: (rng: Rng, lineLimit: number) => GeneratedInput,
  check: (
    input: GeneratedInput,
    pieces: Buffer[],
    lineLimit: number,
    literalLimit: number,
    stats: Stats,
  ) => void,
): void {
  const rng = new Rng(SEED);
  const stats = newStats();
  for (let i = 0; i < INPUTS; i += 1) {
    const small = rng.chance(0.25);
    const lineLimit = small ? rng.pick(LINE_LIMITS.slice(1)) : (LINE_LIMITS[0] as number);
    const literalLimit = small ? rng.pick(LITERAL_LIMITS.slice(1)) : (LITERAL_LIMITS[0] as number);
    const input = generate(rng, lineLimit);
    const pieces = chunked(rng, input.bytes);
    count(stats, input);
    try {
      check(input, pieces, lineLimit, literalLimit, stats);
    } catch (error: unknown) {
      const shown = JSON.stringify(input.bytes.toString('latin1').slice(0, 400));
      throw new Error(
        `${name} input #${i} (${input.kind}, seed ${SEED}, line limit ${lineLimit}, literal limit ${literalLimit}) ${shown}: ${(error as Error).stack}`,
      );
    }
  }
  report(t, name, stats);
  assert.equal(stats.inputs, INPUTS);
}

function checkLine(raw: Buffer, text: string, lineLimit: number): void {
  assert.equal(raw[raw.length - 1], 0x0a, 'a line ends with LF');
  assert.equal(raw.indexOf(0x0a), raw.length - 1, 'a line holds exactly one LF');
  assert.ok(raw.length <= lineLimit + 2, `line of ${raw.length} bytes over the limit of ${lineLimit}`);
  const cut = raw.length >= 2 && raw[raw.length - 2] === 0x0d ? 2 : 1;
  assert.equal(text, raw.toString('latin1', 0, raw.length - cut));
}

function sameCredentials(found: Credentials | undefined, expected: Credentials | undefined, stats: Stats) {
  if (!expected) return;
  assert.deepEqual(found, expected, 'the parser must find the credentials the generator encoded');
  stats.checkedAgainstGenerator += 1;
}

// ---- IMAP ------------------------------------------------------------------------------------------------

type ImapCommand =
  | { kind: 'login'; parts: CommandPart[]; literal: Buffer[] }
  | { kind: 'sasl-plain' }
  | { kind: 'forward' };

/** What the IMAP session does with frames before login, minus the sockets: the credentials it would use. */
function imapCheck(
  input: GeneratedInput,
  pieces: Buffer[],
  lineLimit: number,
  literalLimit: number,
  stats: Stats,
): void {
  const framer = new CommandFramer(lineLimit, literalLimit);
  const framedBytes: Buffer[] = [];
  const found: Credentials[] = [];
  let current: ImapCommand | undefined;
  let pushed = 0;
  let framed = 0;
  let literalOwed = 0;

  const onFrame = (frame: ClientFrame) => {
    if (frame.kind === 'line') {
      checkLine(frame.raw, frame.text, lineLimit);
      assert.equal(literalOwed, 0, 'no line while literal bytes are owed');
      framed += frame.raw.length;
      framedBytes.push(frame.raw);
      literalOwed = frame.literal?.size ?? 0;
      if (frame.literal) assert.ok(frame.literal.size <= literalLimit);
    } else {
      assert.ok(frame.data.length <= literalOwed || (frame.data.length === 0 && literalOwed === 0));
      literalOwed -= frame.data.length;
      assert.equal(frame.remaining, literalOwed);
      framed += frame.data.length;
      framedBytes.push(frame.data);
    }
    const command = current;
    if (!command) {
      if (frame.kind !== 'line') return;
      const match = IMAP_COMMAND.exec(frame.text);
      const verb = match?.[2]?.toUpperCase();
      const rest = match?.[3] ?? '';
      if (match && verb === 'LOGIN') {
        const login: ImapCommand = { kind: 'login', parts: [{ kind: 'text', text: rest }], literal: [] };
        current = login;
        finishLogin(login, frame);
      } else if (match && verb === 'AUTHENTICATE' && /^PLAIN(\s|$)/i.test(rest)) {
        const initial = rest.slice('PLAIN'.length).trim();
        if (initial) plain(initial);
        else current = { kind: 'sasl-plain' };
      } else if (frame.literal) {
        current = { kind: 'forward' };
      }
      return;
    }
    if (command.kind === 'forward') {
      if (frame.kind === 'line' && !frame.literal) current = undefined;
      return;
    }
    if (command.kind === 'sasl-plain') {
      current = undefined;
      if (frame.kind === 'line' && frame.text.trim() !== '*') plain(frame.text);
      return;
    }
    if (frame.kind === 'literal') {
      command.literal.push(frame.data);
      if (frame.remaining === 0) {
        command.parts.push({ kind: 'literal', data: Buffer.concat(command.literal) });
        command.literal = [];
      }
      return;
    }
    command.parts.push({ kind: 'text', text: frame.text });
    finishLogin(command, frame);
  };

  const finishLogin = (login: Extract<ImapCommand, { kind: 'login' }>, frame: ClientFrame) => {
    if (frame.kind === 'line' && frame.literal) return;
    current = undefined;
    try {
      found.push(loginCredentials(parseAstrings(login.parts)));
      stats.logins += 1;
    } catch (error: unknown) {
      if (!(error instanceof ArgumentError)) throw error;
      stats.argumentErrors += 1;
    }
  };

  const plain = (response: string) => {
    const credentials = decodePlain(response);
    if (credentials) {
      found.push(credentials);
      stats.logins += 1;
    }
  };

  for (const piece of pieces) {
    framer.push(piece);
    pushed += piece.length;
    for (;;) {
      let frame: ClientFrame | undefined;
      try {
        frame = framer.next();
      } catch (error: unknown) {
        if (!(error instanceof LineTooLongError) && !(error instanceof LiteralTooLargeError)) throw error;
        stats.limitErrors += 1;
        // The session closes, or refuses the command and drains: nothing more of this input is parsed.
        return;
      }
      if (!frame) break;
      onFrame(frame);
    }
    // What is buffered and not yet framed: without a literal in progress, at most one unfinished line.
    if (literalOwed === 0)
      assert.ok(pushed - framed <= lineLimit, 'buffered bytes stay within the line limit');
  }
  const rest = framer.drain();
  assert.equal(framed + rest.length, pushed, 'framing loses and duplicates no byte');
  assert.ok(Buffer.concat([...framedBytes, rest]).equals(input.bytes), 'frames are the input, in order');
  if (input.expected) sameCredentials(found[0], input.expected, stats);
}

// ---- POP3 and SMTP: lines, one command at a time ---------------------------------------------------------

/** Feeds the pieces through a LineBuffer as LineSession does, checking framing; calls `onLine` per line. */
function lines(
  input: GeneratedInput,
  pieces: Buffer[],
  lineLimit: number,
  stats: Stats,
  onLine: (text: string) => void,
): boolean {
  const buffer = new LineBuffer(lineLimit);
  const framedBytes: Buffer[] = [];
  let pushed = 0;
  let framed = 0;
  for (const piece of pieces) {
    buffer.push(piece);
    pushed += piece.length;
    for (;;) {
      let line: ReturnType<LineBuffer['nextLine']>;
      try {
        line = buffer.nextLine();
      } catch (error: unknown) {
        if (!(error instanceof LineTooLongError)) throw error;
        stats.limitErrors += 1;
        // The session answers and closes: nothing more of this input is parsed.
        return false;
      }
      if (!line) break;
      checkLine(line.raw, line.text, lineLimit);
      framed += line.raw.length;
      framedBytes.push(line.raw);
      onLine(line.text);
    }
    assert.ok(buffer.length <= lineLimit, 'buffered bytes stay within the line limit');
  }
  const rest = buffer.drain();
  assert.equal(framed + rest.length, pushed, 'framing loses and duplicates no byte');
  assert.ok(Buffer.concat([...framedBytes, rest]).equals(input.bytes), 'lines are the input, in order');
  return true;
}

function pop3Check(input: GeneratedInput, pieces: Buffer[], lineLimit: number, _: number, stats: Stats) {
  const found: Credentials[] = [];
  let pendingUser: string | undefined;
  let awaitingPlain = false;
  const plain = (response: string) => {
    if (response.trim() === '*') return;
    const credentials = decodePlain(response);
    if (credentials) {
      found.push(credentials);
      stats.logins += 1;
    }
  };
  const complete = lines(input, pieces, lineLimit, stats, (text) => {
    if (awaitingPlain) {
      awaitingPlain = false;
      plain(text);
      return;
    }
    const [verb = '', ...rest] = text.split(' ');
    const command = verb.toUpperCase();
    const argument = rest.join(' ');
    if (command !== 'PASS') pendingUser = undefined;
    if (command === 'USER' && argument) pendingUser = argument;
    else if (command === 'PASS' && pendingUser !== undefined) {
      found.push({ username: pendingUser, password: argument });
      stats.logins += 1;
      pendingUser = undefined;
    } else if (command === 'AUTH') {
      const [mechanism = '', initial] = argument.split(' ');
      if (mechanism.toUpperCase() !== 'PLAIN') return;
      if (initial === undefined) awaitingPlain = true;
      else plain(initial === '=' ? '' : initial);
    }
  });
  if (complete && input.expected) sameCredentials(found[0], input.expected, stats);
}

function smtpCheck(input: GeneratedInput, pieces: Buffer[], lineLimit: number, _: number, stats: Stats) {
  const found: Credentials[] = [];
  type Pending =
    | { kind: 'plain' }
    | { kind: 'login-username' }
    | { kind: 'login-password'; username: string };
  let pending: Pending | undefined;
  const decodeText = (base64: string) => Buffer.from(base64.trim(), 'base64').toString('utf8');
  const done = (credentials: Credentials | undefined) => {
    if (!credentials) return;
    found.push(credentials);
    stats.logins += 1;
  };
  const complete = lines(input, pieces, lineLimit, stats, (text) => {
    const state = pending;
    if (state) {
      pending = undefined;
      if (text.trim() === '*') return;
      if (state.kind === 'plain') done(decodePlain(text));
      else if (state.kind === 'login-username')
        pending = { kind: 'login-password', username: decodeText(text) };
      else done({ username: state.username, password: decodeText(text) });
      return;
    }
    const [verb = '', mechanism = '', initial] = text.split(' ');
    if (verb.toUpperCase() !== 'AUTH') return;
    const name = mechanism.toUpperCase();
    if (name === 'PLAIN') {
      if (initial === undefined) pending = { kind: 'plain' };
      else done(decodePlain(initial === '=' ? '' : initial));
    } else if (name === 'LOGIN') {
      pending =
        initial === undefined
          ? { kind: 'login-username' }
          : { kind: 'login-password', username: decodeText(initial) };
    }
  });
  if (complete && input.expected) sameCredentials(found[0], input.expected, stats);
}

describe(`fuzzing the pre-authentication parsers (${INPUTS} inputs each, seed ${SEED})`, () => {
  it('IMAP: command framer, LOGIN astrings and literals, AUTHENTICATE PLAIN', (t) => {
    fuzz(t, 'IMAP', imapInput, imapCheck);
  });

  it('POP3: line framing, USER/PASS, AUTH PLAIN', (t) => {
    fuzz(t, 'POP3', pop3Input, pop3Check);
  });

  it('SMTP: line framing, AUTH PLAIN, AUTH LOGIN', (t) => {
    fuzz(t, 'SMTP', smtpInput, smtpCheck);
  });
});
