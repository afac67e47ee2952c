import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { IniDocument, IniSyntaxError, parseBoolean, parseInteger } from '../../../src/config/ini.ts';
import { ErrorCode, isMailbridgeError } from '../../../src/errors.ts';

// Golden data from Python's configparser (test/fixtures/generate.py); no Python is needed to run these tests.
const FIXTURES = new URL('../../fixtures/ini/', import.meta.url);

type Pairs = [string, string][];
interface Parsed {
  sections: string[];
  defaults: Pairs;
  items: [string, Pairs][];
}
type Outcome = ({ ok: true } & Parsed) | { ok: false; error: string; lineno: number; linenos?: number[] };
type Op = [string, ...unknown[]];

function fixture<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8')) as T;
}

function caseText(name: string): string {
  return readFileSync(new URL(`cases/${name}.ini`, FIXTURES), 'utf8');
}

function describeDoc(doc: IniDocument): Parsed {
  return {
    sections: doc.sections(),
    defaults: doc.items('DEFAULT'),
    items: doc.sections().map((s): [string, Pairs] => [s, doc.items(s)]),
  };
}

function assertMatchesPython(text: string, source: string, expected: Outcome): void {
  if (expected.ok) {
    const doc = IniDocument.parse(text, source);
    const { ok: _, ...python } = expected;
    assert.deepEqual(describeDoc(doc), python);
    for (const [section, pairs] of expected.items) {
      assert.deepEqual(
        doc.keys(section),
        pairs.map(([k]) => k),
      );
      for (const [key, value] of pairs) assert.equal(doc.get(section, key.toUpperCase()), value);
    }
    assert.equal(doc.toString(), text, 'an unedited document serialises to its input byte for byte');
    return;
  }
  assert.throws(
    () => IniDocument.parse(text, source),
    (error: unknown) => {
      assert.ok(error instanceof IniSyntaxError, `expected IniSyntaxError, got ${String(error)}`);
      assert.equal(error.code, ErrorCode.CONFIG_SYNTAX);
      assert.equal(error.configparserError, expected.error);
      assert.equal(error.line, expected.lineno);
      assert.ok(error.message.startsWith(`${source} line ${expected.lineno}: `), error.message);
      return true;
    },
  );
}

function applyOps(doc: IniDocument, ops: readonly Op[]): void {
  for (const [name, ...args] of ops) {
    const [a, b, c] = args as [string, string, string];
    if (name === 'add_section') doc.addSection(a);
    else if (name === 'set') doc.set(a, b, c);
    else if (name === 'remove_option') doc.remove(a, b);
    else if (name === 'remove_section') doc.removeSection(a);
    else if (name === 'read_dict') {
      for (const [section, values] of Object.entries(args[0] as Record<string, Record<string, string>>)) {
        doc.addSection(section);
        for (const [key, value] of Object.entries(values)) doc.set(section, key, value);
      }
    } else throw new Error(`unknown op ${name}`);
  }
}

describe('IniDocument.parse agrees with configparser', () => {
  const parsed = fixture<Record<string, Outcome>>('parsed.json');
  for (const [name, expected] of Object.entries(parsed)) {
    it(`${name}${expected.ok ? '' : ` raises ${expected.error}`}`, () => {
      assertMatchesPython(caseText(name), `${name}.ini`, expected);
    });
  }

  it('on 400 random files over the characters configparser cares about', () => {
    const fuzz = fixture<({ text: string } & Outcome)[]>('fuzz.json');
    for (const [i, { text, ...expected }] of fuzz.entries()) {
      try {
        assertMatchesPython(text, 'fuzz.ini', expected as Outcome);
      } catch (error: unknown) {
        assert.fail(`fuzz case ${i} ${JSON.stringify(text)}: ${(error as Error).message}`);
      }
    }
  });
});

describe('syntax error messages', () => {
  const message = (text: string, source = 'emailproxy.config'): string => {
    try {
      IniDocument.parse(text, source);
    } catch (error: unknown) {
      return (error as Error).message;
    }
    return assert.fail('no error');
  };

  it('name the file, the line and the first occurrence', () => {
    const text = `${'# a comment\n'.repeat(7)}[alice@example.com]\ntoken_url = a\nscope = b\nclient_id = c\ntoken_url = d\n`;
    assert.equal(
      message(text),
      "emailproxy.config line 12: option 'token_url' already appears in section '[alice@example.com]' (line 9)",
    );
    assert.equal(
      message('[a]\n[b]\n[a]\n'),
      "emailproxy.config line 3: section '[a]' already appears (line 1)",
    );
  });

  it('explain a missing delimiter, a malformed header, an option before any section and a BOM', () => {
    assert.match(
      message('[s]\nallow_catch_all_accounts\n'),
      /^emailproxy.config line 2: 'allow_catch_all_accounts' has no '=' or ':'/,
    );
    assert.match(
      message('[s]\n[alice@example.com\n'),
      /line 2: malformed section header '\[alice@example.com'/,
    );
    assert.match(message('[s]\n= v\n'), /line 2: option line starting with '=' has no option name/);
    assert.equal(
      message('\n\nclient_secret = hunter2\n'),
      "emailproxy.config line 3: option 'client_secret' appears before any [section] header",
    );
    assert.match(message('\ufeff[s]\n'), /line 1: the file starts with a UTF-8 byte order mark/);
    assert.match(
      message('[s]\nbad one\nk = v\nbad two\nbad three\n'),
      /line 2: .* \(and 2 more: line 4, 5\)$/,
    );
  });

  it('never quote a value after the delimiter', () => {
    assert.doesNotMatch(message('client_secret = hunter2\n[s]\n'), /hunter2/);
    assert.doesNotMatch(message('[s]\nclient_secret = hunter2\nclient_secret = hunter3\n'), /hunter/);
  });

  it('are MailbridgeErrors with code CONFIG_SYNTAX', () => {
    assert.throws(
      () => IniDocument.parse('k = v\n', 'x'),
      (e: unknown) => isMailbridgeError(e, ErrorCode.CONFIG_SYNTAX),
    );
  });
});

describe('a document built from empty writes what Python writes', () => {
  const written = fixture<Record<string, { ops: Op[]; output: string }>>('written.json');
  for (const [name, { ops, output }] of Object.entries(written)) {
    it(name, () => {
      const doc = IniDocument.empty();
      applyOps(doc, ops);
      assert.equal(doc.toString(), output);
    });
  }
});

describe('edits read back as they do in Python', () => {
  const edits = fixture<Record<string, { base: string; ops: Op[] } & Parsed>>('edits.json');
  for (const [name, { base, ops, ...python }] of Object.entries(edits)) {
    it(name, () => {
      const doc = IniDocument.parse(caseText(base), `${base}.ini`);
      applyOps(doc, ops);
      assert.deepEqual(describeDoc(doc), python);
      assert.deepEqual(describeDoc(IniDocument.parse(doc.toString(), 'reparsed')), python);
    });
  }
});

describe('edits keep the rest of the file as it was', () => {
  it('replaces token values in place and appends new keys after the last option', () => {
    const text = [
      '# My accounts',
      '[alice@example.com]',
      'token_url : https://login.example.com/token',
      '  # cached by the proxy',
      'TOKEN_SALT=c2FsdA==',
      'access_token   =   old',
      'access_token_expiry = 1',
      '',
      '; bob is next',
      '[bob@example.com]',
      'token_url = https://login.example.com/token',
      '',
    ].join('\n');
    const doc = IniDocument.parse(text, 'x');
    doc.set('alice@example.com', 'access_token', 'gAAAAABnew==');
    doc.set('alice@example.com', 'token_salt', 'bmV3');
    doc.set('alice@example.com', 'refresh_token', 'gAAAAABrefresh==');
    doc.set('bob@example.com', 'token_iterations', '1200000');
    assert.equal(
      doc.toString(),
      [
        '# My accounts',
        '[alice@example.com]',
        'token_url : https://login.example.com/token',
        '  # cached by the proxy',
        'TOKEN_SALT=bmV3',
        'access_token   =   gAAAAABnew==',
        'access_token_expiry = 1',
        'refresh_token = gAAAAABrefresh==',
        '',
        '; bob is next',
        '[bob@example.com]',
        'token_url = https://login.example.com/token',
        'token_iterations = 1200000',
        '',
      ].join('\n'),
    );
  });

  it('rewrites a multi-line value with its original continuation indentation', () => {
    const doc = IniDocument.parse('[s]\ndoc = one\n    two\n\n    three\nnext = x\n', 'x');
    doc.set('s', 'doc', 'a\nb\n\nc');
    assert.equal(doc.toString(), '[s]\ndoc = a\n    b\n    \n    c\nnext = x\n');
    doc.set('s', 'next', 'y\nz');
    assert.equal(doc.toString(), '[s]\ndoc = a\n    b\n    \n    c\nnext = y\n\tz\n');
    assert.equal(IniDocument.parse(doc.toString(), 'x').get('s', 'next'), 'y\nz');
  });

  it('gives an empty value a space after the delimiter when it gets one', () => {
    const doc = IniDocument.parse('[s]\na =\nb=\nc :\n', 'x');
    doc.set('s', 'a', '1');
    doc.set('s', 'b', '2');
    doc.set('s', 'c', '3');
    assert.equal(doc.toString(), '[s]\na = 1\nb=2\nc : 3\n');
  });

  it('keeps CRLF line endings and uses them for new lines', () => {
    const doc = IniDocument.parse('[s]\r\na = 1\r\n', 'x');
    doc.set('s', 'b', 'two\nlines');
    doc.addSection('t');
    assert.equal(doc.toString(), '[s]\r\na = 1\r\nb = two\r\n\tlines\r\n\r\n[t]\r\n\r\n');
  });

  it('handles a file without a final newline', () => {
    const doc = IniDocument.parse('[s]\na = 1', 'x');
    doc.set('s', 'a', '2');
    assert.equal(doc.toString(), '[s]\na = 2');
    doc.set('s', 'b', '3');
    assert.equal(doc.toString(), '[s]\na = 2\nb = 3\n');
  });

  it('indents a new option like the last one, so the next header is not swallowed as a continuation', () => {
    const doc = IniDocument.parse('[s]\n  a = 1\n  [t]\n  b = 2\n', 'x');
    doc.set('s', 'c', '3');
    doc.set('t', 'd', '4');
    assert.equal(doc.toString(), '[s]\n  a = 1\n  c = 3\n  [t]\n  b = 2\n  d = 4\n');
    assert.deepEqual(doc.sections(), ['s', 't']);
  });

  it('indents the first option of an empty section at least as deep as the next line', () => {
    const doc = IniDocument.parse('[s]\n    [t]\n', 'x');
    doc.set('s', 'a', '1');
    assert.equal(doc.toString(), '[s]\n    a = 1\n    [t]\n');
    assert.deepEqual(doc.items('t'), []);
  });

  it('puts a new [DEFAULT] block before the first section, as write() orders it', () => {
    const doc = IniDocument.parse('# top\n[s]\na = 1\n', 'x');
    doc.set('DEFAULT', 'local_address', '::1');
    assert.equal(doc.toString(), '# top\n[DEFAULT]\nlocal_address = ::1\n\n[s]\na = 1\n');
    assert.equal(doc.get('s', 'local_address'), '::1');
  });

  it('removes an option with its continuation lines and leaves the rest', () => {
    const doc = IniDocument.parse('[s]\na = 1\n  more\n# keep\nb = 2\n', 'x');
    assert.equal(doc.remove('s', 'A'), true);
    assert.equal(doc.toString(), '[s]\n# keep\nb = 2\n');
    assert.equal(doc.remove('s', 'a'), false);
    assert.equal(doc.remove('missing', 'b'), false);
  });

  it('removes only own options, never inherited ones', () => {
    const doc = IniDocument.parse('[DEFAULT]\nk = d\n[s]\n', 'x');
    assert.equal(doc.remove('s', 'k'), false);
    assert.equal(doc.get('s', 'k'), 'd');
  });

  it('removes a section with its trailing blank lines but keeps the comment introducing the next one', () => {
    const doc = IniDocument.parse('[a]\nx = 1\n\n[b]\n# inside\ny = 2\n\n\n# about c\n[c]\nz = 3\n', 'x');
    assert.equal(doc.removeSection('b'), true);
    assert.equal(doc.toString(), '[a]\nx = 1\n\n# about c\n[c]\nz = 3\n');
    assert.equal(doc.removeSection('b'), false);
    assert.equal(doc.removeSection('DEFAULT'), false);
  });

  it('creates a missing section at the end, separated by a blank line', () => {
    const doc = IniDocument.parse('[a]\nx = 1\n', 'x');
    doc.set('carol@example.com', 'token_salt', 'c2FsdA==');
    assert.equal(doc.toString(), '[a]\nx = 1\n\n[carol@example.com]\ntoken_salt = c2FsdA==\n\n');
  });
});

describe('edits that configparser could not read back are refused', () => {
  const base = '[s]\na = 1\n';

  for (const [label, value] of [
    ['leading whitespace', ' x'],
    ['trailing whitespace', 'x '],
    ['a carriage return', 'x\ry'],
    ['a continuation line starting with #', 'x\n# y'],
    ['a continuation line starting with ;', 'x\n;y'],
    ['a trailing newline', 'x\n'],
  ] as const) {
    it(`a value with ${label}`, () => {
      const doc = IniDocument.parse(base, 'x');
      assert.throws(
        () => doc.set('s', 'a', value),
        (e: unknown) => isMailbridgeError(e, ErrorCode.CONFIG_INVALID),
      );
      assert.throws(
        () => doc.set('s', 'new', value),
        (e: unknown) => isMailbridgeError(e, ErrorCode.CONFIG_INVALID),
      );
      assert.equal(doc.toString(), base);
      assert.equal(doc.get('s', 'a'), '1');
    });
  }

  it('keys that are empty, padded, contain a delimiter or look like a comment or header', () => {
    const doc = IniDocument.parse(base, 'x');
    for (const key of ['', ' k', 'k ', 'a=b', 'a:b', '#k', ';k', '[k]', 'k\nl']) {
      assert.throws(
        () => doc.set('s', key, 'v'),
        (e: unknown) => isMailbridgeError(e, ErrorCode.CONFIG_INVALID),
        key,
      );
    }
    assert.equal(doc.toString(), base);
  });

  it('section names that are empty, have line breaks, exist already, or are DEFAULT', () => {
    const doc = IniDocument.parse(base, 'x');
    for (const name of ['', 'a\nb', 's', 'DEFAULT']) {
      assert.throws(
        () => doc.addSection(name),
        (e: unknown) => isMailbridgeError(e, ErrorCode.CONFIG_INVALID),
        name,
      );
    }
    assert.throws(
      () => doc.set('x\ry', 'k', 'v'),
      (e: unknown) => isMailbridgeError(e, ErrorCode.CONFIG_INVALID),
    );
    assert.equal(doc.toString(), base);
  });

  it('accepts odd but representable section names', () => {
    const doc = IniDocument.empty();
    for (const name of ['a]b', ' spaced ', '@', '[x', '#not a comment']) doc.addSection(name);
    assert.deepEqual(IniDocument.parse(doc.toString(), 'x').sections(), [
      'a]b',
      ' spaced ',
      '@',
      '[x',
      '#not a comment',
    ]);
  });
});

describe('hostile input', () => {
  it('parses a 1 MiB value and a 1 MiB run of inner spaces in linear time', () => {
    const big = 'x'.repeat(1 << 20);
    const started = performance.now();
    const doc = IniDocument.parse(
      `[s]\nk = ${big}\nspaces = a${' '.repeat(1 << 20)}b\nnodelim${' '.repeat(1 << 20)}x = 1\n`,
      'x',
    );
    assert.equal(doc.get('s', 'k'), big);
    assert.equal(doc.get('s', 'spaces')?.length, (1 << 20) + 2);
    doc.set('s', 'k', `${big}y`);
    assert.equal(doc.get('s', 'k')?.length, (1 << 20) + 1);
    assert.ok(performance.now() - started < 2000, 'no super-linear scanning');
  });

  it('either parses binary garbage or raises IniSyntaxError, never anything else', () => {
    let seed = 0x9e3779b9;
    const next = (): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    for (let i = 0; i < 300; i++) {
      const bytes = Buffer.from(
        Array.from({ length: Math.floor(next() * 200) }, () => Math.floor(next() * 256)),
      );
      const text = (i % 2 === 0 ? '[s]\n' : '') + bytes.toString(i % 3 === 0 ? 'latin1' : 'utf8');
      try {
        const doc = IniDocument.parse(text, 'garbage');
        assert.equal(doc.toString(), text);
        for (const section of doc.sections()) {
          try {
            doc.set(section, 'access_token', 'gAAAAAB==');
            assert.equal(
              IniDocument.parse(doc.toString(), 'again').get(section, 'access_token'),
              'gAAAAAB==',
            );
          } catch (error: unknown) {
            assert.ok(isMailbridgeError(error, ErrorCode.CONFIG_INVALID), String(error));
          }
        }
      } catch (error: unknown) {
        assert.ok(error instanceof IniSyntaxError, `case ${i}: ${String(error)}`);
      }
    }
  });
});

describe('scalar values', () => {
  const scalars = fixture<{
    getboolean: [string, boolean | null][];
    int: [string, number | string | null][];
  }>('scalars.json');

  it("parseBoolean accepts exactly getboolean()'s words", () => {
    for (const [text, python] of scalars.getboolean)
      assert.equal(parseBoolean(text), python ?? undefined, text);
  });

  it('parseInteger follows int() for ASCII digits within the safe range', () => {
    for (const [text, python] of scalars.int) {
      // Python also reads non-ASCII decimal digits ('１２' is 12) and arbitrarily large numbers; we refuse both.
      const unsupported = /[\uff10-\uff19\u0660-\u0669]/.test(text) || typeof python === 'string';
      assert.equal(parseInteger(text), unsupported ? undefined : (python ?? undefined), JSON.stringify(text));
    }
  });
});
