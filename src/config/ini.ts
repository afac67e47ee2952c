import { ErrorCode, MailbridgeError } from '../errors.ts';

/**
 * An INI document read exactly as email-oauth2-proxy reads its config, with Python's
 * `configparser.ConfigParser(interpolation=None)` (`RawConfigParser._read` of CPython 3.10-3.13, each checked by the
 * fixtures), and edited in place so a file keeps its comments, blank lines and spacing when only token values
 * change (Python's `write()` drops them all).
 *
 * Every edit is applied to the text and the text is parsed again; an edit that would not read back as intended
 * (a value with leading whitespace, a key containing `=`…) is refused, so `parse(doc.toString())` always equals `doc`.
 */

export const DEFAULT_SECTION = 'DEFAULT';

export type ConfigparserError =
  | 'DuplicateSectionError'
  | 'DuplicateOptionError'
  | 'MissingSectionHeaderError'
  | 'ParsingError';

/** A file configparser refuses; `configparserError` names the exception Python raises for the same text. */
export class IniSyntaxError extends MailbridgeError {
  readonly source: string;
  readonly line: number;
  readonly configparserError: ConfigparserError;

  constructor(source: string, line: number, configparserError: ConfigparserError, problem: string) {
    super(ErrorCode.CONFIG_SYNTAX, `${source} line ${line}: ${problem}`);
    this.name = 'IniSyntaxError';
    this.source = source;
    this.line = line;
    this.configparserError = configparserError;
  }
}

interface Line {
  text: string;
  /** '\n', '\r\n', '\r' or '' (last line without a newline); kept so untouched lines stay byte-identical. */
  eol: string;
}

interface OptionSpan {
  key: string;
  rawKey: string;
  value: string;
  /** Indices of the option line and of its last continuation line. */
  first: number;
  last: number;
  indent: string;
  /** What stood between the key and the value, e.g. ' = ' or ':'. */
  delimiter: string;
  continuationIndent: string | undefined;
}

interface SectionSpan {
  name: string;
  header: number;
  options: Map<string, OptionSpan>;
  /** Where a new option goes: after the last line of the last option, or after the (first) header. */
  anchor: number;
  anchorIndent: string | undefined;
}

interface Model {
  sections: Map<string, SectionSpan>;
  defaults: SectionSpan | undefined;
}

// str.isspace() / re's \s for str patterns: wider than JavaScript's \s (adds \x1c-\x1f and \x85, lacks \ufeff),
// so `\x0c` indents a line and NBSP is stripped around keys and values, as in Python.
function isPyWhitespace(code: number): boolean {
  if (code <= 0x20) return code === 0x20 || (code >= 0x09 && code <= 0x0d) || (code >= 0x1c && code <= 0x1f);
  if (code < 0x85) return false;
  return (
    code === 0x85 ||
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000
  );
}

function leadingWhitespace(text: string): number {
  let i = 0;
  while (i < text.length && isPyWhitespace(text.charCodeAt(i))) i++;
  return i;
}

function pyRstrip(text: string): string {
  let end = text.length;
  while (end > 0 && isPyWhitespace(text.charCodeAt(end - 1))) end--;
  return text.slice(0, end);
}

function pyStrip(text: string): string {
  return pyRstrip(text.slice(leadingWhitespace(text)));
}

// Python reads the file in text mode, whose universal newlines end a line at '\n', '\r\n' or a lone '\r' (and at
// nothing else: '\x0b', '\x0c', '\x85' and U+2028 stay inside the line, unlike str.splitlines()).
function splitLines(text: string): Line[] {
  const lines: Line[] = [];
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code !== 0x0a && code !== 0x0d) continue;
    const eol = code === 0x0d && text.charCodeAt(i + 1) === 0x0a ? '\r\n' : text.charAt(i);
    lines.push({ text: text.slice(start, i), eol });
    i += eol.length - 1;
    start = i + 1;
  }
  if (start < text.length) lines.push({ text: text.slice(start), eol: '' });
  return lines;
}

function isCommentOrBlank(text: string): boolean {
  const stripped = pyStrip(text);
  return stripped === '' || stripped.startsWith('#') || stripped.startsWith(';');
}

// SECTCRE is `\[(?P<header>.+)\]` applied with match(): anchored at the start only, greedy, so the name runs to the
// last ']' and anything after it is ignored ("[a] ; note" is section 'a', "[a]b]" is 'a]b'; Python 3.9 and older
// stopped at the first ']' and read 'a' there — the only difference between versions the fixtures found).
function parseHeader(content: string): string | undefined {
  if (!content.startsWith('[')) return undefined;
  const close = content.lastIndexOf(']');
  return close >= 2 ? content.slice(1, close) : undefined;
}

// OPTCRE `(?P<option>.*?)\s*(?P<vi>=|:)\s*(?P<value>.*)$`: the lazy option group means the first '=' or ':' on the
// line is the delimiter. Done by hand rather than by regex to stay linear on hostile lines.
function delimiterIndex(content: string): number {
  for (let i = 0; i < content.length; i++) {
    const code = content.charCodeAt(i);
    if (code === 0x3d || code === 0x3a) return i;
  }
  return -1;
}

function excerpt(text: string): string {
  const clean = pyStrip(text);
  return `'${clean.length > 60 ? `${clean.slice(0, 57)}...` : clean}'`;
}

function sectionLabel(name: string): string {
  return `'[${name}]'`;
}

interface ParseState {
  source: string;
  model: Model;
  current: SectionSpan | undefined;
  option: OptionSpan | undefined;
  parts: Map<OptionSpan, string[]>;
  sectionLines: Map<string, number>;
  optionLines: Map<SectionSpan, Map<string, number>>;
  parsingErrors: { line: number; problem: string }[];
  indentLevel: number;
}

function parseModel(lines: readonly Line[], source: string): Model {
  const state: ParseState = {
    source,
    model: { sections: new Map(), defaults: undefined },
    current: undefined,
    option: undefined,
    parts: new Map(),
    sectionLines: new Map(),
    optionLines: new Map(),
    parsingErrors: [],
    indentLevel: 0,
  };
  lines.forEach((line, index) => {
    parseLine(state, line.text, index);
  });
  const [firstError, ...moreErrors] = state.parsingErrors;
  if (firstError !== undefined) {
    // ParsingError is collected and raised after the whole file was read (duplicates raise at once instead).
    const more =
      moreErrors.length > 0
        ? ` (and ${moreErrors.length} more: line ${moreErrors.map((e) => e.line).join(', ')})`
        : '';
    throw new IniSyntaxError(source, firstError.line, 'ParsingError', `${firstError.problem}${more}`);
  }
  for (const [option, parts] of state.parts) {
    // _join_multiline_values: '\n'.join(parts).rstrip() drops the blank lines that trailed the value.
    option.value = pyRstrip(parts.join('\n'));
  }
  return state.model;
}

function parseLine(state: ParseState, text: string, index: number): void {
  const stripped = pyStrip(text);
  const comment = stripped.startsWith('#') || stripped.startsWith(';');
  if (stripped === '' || comment) {
    // empty_lines_in_values=True: a blank line belongs to the value being read (trimmed again at the end); a comment
    // line is skipped without ending the value.
    if (!comment && state.option !== undefined && state.option.key !== '')
      state.parts.get(state.option)?.push('');
    return;
  }
  const indent = leadingWhitespace(text);
  const { current, option } = state;
  if (current !== undefined && option !== undefined && option.key !== '' && indent > state.indentLevel) {
    state.parts.get(option)?.push(stripped);
    option.last = index;
    option.continuationIndent ??= text.slice(0, indent);
    current.anchor = index;
    return;
  }
  state.indentLevel = indent;
  const header = parseHeader(stripped);
  if (header !== undefined) {
    startSection(state, header, index);
    return;
  }
  if (current === undefined) throw missingHeader(state.source, index + 1, stripped);
  parseOption(state, current, text, stripped, indent, index);
}

function startSection(state: ParseState, name: string, index: number): void {
  const { model } = state;
  state.option = undefined;
  if (name === DEFAULT_SECTION) {
    // [DEFAULT] may appear several times; its blocks merge (configparser never records it as "added").
    model.defaults ??= { name, header: index, options: new Map(), anchor: index, anchorIndent: undefined };
    state.current = model.defaults;
    return;
  }
  const firstLine = state.sectionLines.get(name);
  if (firstLine !== undefined) {
    throw new IniSyntaxError(
      state.source,
      index + 1,
      'DuplicateSectionError',
      `section ${sectionLabel(name)} already appears (line ${firstLine})`,
    );
  }
  state.sectionLines.set(name, index + 1);
  const section: SectionSpan = {
    name,
    header: index,
    options: new Map(),
    anchor: index,
    anchorIndent: undefined,
  };
  model.sections.set(name, section);
  state.current = section;
}

function parseOption(
  state: ParseState,
  section: SectionSpan,
  text: string,
  content: string,
  indent: number,
  index: number,
): void {
  const at = delimiterIndex(content);
  if (at < 0) {
    // configparser leaves the current option untouched here, so indented lines after it still continue that option.
    state.parsingErrors.push({ line: index + 1, problem: noDelimiterProblem(content) });
    return;
  }
  const rawKey = pyRstrip(content.slice(0, at));
  if (rawKey === '') {
    state.parsingErrors.push({
      line: index + 1,
      problem: `option line starting with '${content.charAt(at)}' has no option name before the delimiter`,
    });
  }
  // optionxform() is str.lower(); the empty name is still registered, so a second nameless line is a duplicate.
  const key = rawKey.toLowerCase();
  const seen = state.optionLines.get(section) ?? new Map<string, number>();
  state.optionLines.set(section, seen);
  const firstLine = seen.get(key);
  if (firstLine !== undefined) {
    throw new IniSyntaxError(
      state.source,
      index + 1,
      'DuplicateOptionError',
      `option '${key}' already appears in section ${sectionLabel(section.name)} (line ${firstLine})`,
    );
  }
  seen.set(key, index + 1);
  const afterDelimiter = content.slice(at + 1);
  const valueStart = leadingWhitespace(afterDelimiter);
  const option: OptionSpan = {
    key,
    rawKey,
    value: '',
    first: index,
    last: index,
    indent: text.slice(0, indent),
    delimiter: content.slice(rawKey.length, at + 1 + valueStart),
    continuationIndent: undefined,
  };
  section.options.set(key, option);
  section.anchor = index;
  section.anchorIndent = option.indent;
  state.parts.set(option, [pyRstrip(afterDelimiter.slice(valueStart))]);
  state.option = option;
}

function noDelimiterProblem(content: string): string {
  if (content.startsWith('[')) return `malformed section header ${excerpt(content)} (expected '[name]')`;
  return (
    `${excerpt(content)} has no '=' or ':' (options are written 'key = value'; ` +
    'indent the line to continue the previous value)'
  );
}

function missingHeader(source: string, line: number, content: string): IniSyntaxError {
  if (content.charCodeAt(0) === 0xfeff) {
    return new IniSyntaxError(
      source,
      line,
      'MissingSectionHeaderError',
      'the file starts with a UTF-8 byte order mark, which configparser does not accept; save it without one',
    );
  }
  const at = delimiterIndex(content);
  const what = at > 0 ? `option '${pyRstrip(content.slice(0, at)).toLowerCase()}'` : excerpt(content);
  return new IniSyntaxError(
    source,
    line,
    'MissingSectionHeaderError',
    `${what} appears before any [section] header`,
  );
}

type Snapshot = [string, [string, string][]][];

function snapshot(model: Model): Snapshot {
  const own = (section: SectionSpan): [string, string][] =>
    [...section.options.values()].map((o): [string, string] => [o.key, o.value]);
  const result: Snapshot = [[DEFAULT_SECTION, model.defaults === undefined ? [] : own(model.defaults)]];
  for (const section of model.sections.values()) result.push([section.name, own(section)]);
  return result;
}

function sameSnapshot(a: Snapshot, b: Snapshot): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function documentEol(lines: readonly Line[]): string {
  return lines.find((line) => line.eol !== '')?.eol ?? '\n';
}

function invalidEdit(message: string): MailbridgeError {
  return new MailbridgeError(ErrorCode.CONFIG_INVALID, message);
}

function checkKey(key: string): void {
  const bad =
    key === '' ||
    pyStrip(key) !== key ||
    /[=:\r\n]/.test(key) ||
    key.startsWith('#') ||
    key.startsWith(';') ||
    key.startsWith('[');
  if (bad) {
    throw invalidEdit(
      `option name '${key}' cannot be written to an INI file (it needs to be non-empty, without '=', ':' or ` +
        "line breaks, without surrounding whitespace, and must not start with '#', ';' or '[')",
    );
  }
}

function checkSectionName(name: string): void {
  if (name === DEFAULT_SECTION) {
    throw invalidEdit(
      "'[DEFAULT]' is not an ordinary section; set its options with set('DEFAULT', key, value)",
    );
  }
  if (name === '' || /[\r\n]/.test(name)) {
    throw invalidEdit(
      `section name '${name}' cannot be written to an INI file (empty, or contains a line break)`,
    );
  }
}

function formatOption(
  indent: string,
  rawKey: string,
  delimiter: string,
  value: string,
  continuationIndent: string,
): string[] {
  // write() puts value.replace('\n', '\n\t'): every further line of the value is indented, blank ones included.
  const [first = '', ...rest] = value.split('\n');
  return [`${indent}${rawKey}${delimiter}${first}`, ...rest.map((part) => `${continuationIndent}${part}`)];
}

// "key =" with an empty value followed by a new non-empty value reads better as "key = value" than "key =value".
function delimiterFor(original: string, value: string): string {
  const trailing = original.length - pyRstrip(original).length;
  if (value === '' || trailing > 0 || !isPyWhitespace(original.charCodeAt(0))) return original;
  return `${original} `;
}

export class IniDocument {
  readonly source: string;
  #lines: Line[];
  #model: Model;

  private constructor(source: string, lines: Line[], model: Model) {
    this.source = source;
    this.#lines = lines;
    this.#model = model;
  }

  /** Parses `text` as configparser would; `source` (usually the file name) prefixes every error message. */
  static parse(text: string, source: string): IniDocument {
    const lines = splitLines(text);
    return new IniDocument(source, lines, parseModel(lines, source));
  }

  /** A document with no text; filled with set(), it serialises like Python's `ConfigParser.write()`. */
  static empty(source = '<new>'): IniDocument {
    return IniDocument.parse('', source);
  }

  /** Section names in file order, without DEFAULT (configparser's `sections()`). */
  sections(): string[] {
    return [...this.#model.sections.keys()];
  }

  hasSection(name: string): boolean {
    return this.#model.sections.has(name);
  }

  /** The option's value, falling back to [DEFAULT]; undefined when neither has it or the section is missing. */
  get(section: string, key: string): string | undefined {
    const name = key.toLowerCase();
    if (section === DEFAULT_SECTION) return this.#model.defaults?.options.get(name)?.value;
    const own = this.#model.sections.get(section);
    if (own === undefined) return undefined;
    return own.options.get(name)?.value ?? this.#model.defaults?.options.get(name)?.value;
  }

  /** Option names as configparser's `items(section)` lists them: DEFAULT's first, then the section's own. */
  keys(section: string): string[] {
    return this.items(section).map(([key]) => key);
  }

  /** `configparser.items(section)`: [key, value] pairs with DEFAULT applied; [] for a missing section. */
  items(section: string): [string, string][] {
    const defaults = this.#model.defaults?.options ?? new Map<string, OptionSpan>();
    const own = section === DEFAULT_SECTION ? undefined : this.#model.sections.get(section);
    if (own === undefined && section !== DEFAULT_SECTION) return [];
    const merged = new Map<string, string>();
    for (const [key, option] of defaults) merged.set(key, option.value);
    for (const [key, option] of own?.options ?? []) merged.set(key, option.value);
    return [...merged];
  }

  /**
   * Sets an option, creating the section at the end of the file when it is missing. An existing option's line(s)
   * are replaced where they stand, keeping its indentation, spelling and delimiter; a new option goes after the
   * section's last option. Throws CONFIG_INVALID for a key or value configparser would not read back unchanged.
   */
  set(section: string, key: string, value: string): void {
    checkKey(key);
    let lines = this.#lines;
    let model = this.#model;
    let expected = snapshot(model);
    if (this.#sectionSpan(model, section) === undefined) {
      if (section !== DEFAULT_SECTION) checkSectionName(section);
      lines =
        section === DEFAULT_SECTION
          ? this.#withDefaultBlock(lines, model)
          : this.#withSection(lines, section);
      expected = withSectionAdded(expected, section);
      ({ lines, model } = this.#reparse(
        lines,
        expected,
        () => `section name '${section}' cannot be written to an INI file`,
      ));
    }
    const target = this.#sectionSpan(model, section);
    if (target === undefined) throw new Error('unreachable: the section was just created');
    const name = key.toLowerCase();
    const existing = target.options.get(name);
    const eol = documentEol(lines);
    let next: Line[];
    if (existing !== undefined) {
      const formatted = formatOption(
        existing.indent,
        existing.rawKey,
        delimiterFor(existing.delimiter, value),
        value,
        existing.continuationIndent ?? `${existing.indent}\t`,
      );
      const lastEol = lines[existing.last]?.eol ?? eol;
      const replacement = formatted.map((text, i) => ({
        text,
        eol: i === formatted.length - 1 ? lastEol : eol,
      }));
      next = [...lines.slice(0, existing.first), ...replacement, ...lines.slice(existing.last + 1)];
    } else {
      const indent = this.#newOptionIndent(lines, target);
      const formatted = formatOption(indent, name, ' = ', value, `${indent}\t`);
      next = insertAfter(lines, target.anchor, formatted, eol);
    }
    const updated = withOptionSet(expected, section, name, value);
    this.#commit(
      next,
      updated,
      () =>
        `cannot write option '${name}' of section ${sectionLabel(section)} to ${this.source}: configparser would ` +
        'read the value back differently (no line of it may start or end with whitespace or contain a carriage ' +
        "return, and no continuation line may start with '#' or ';')",
    );
  }

  /** Removes a section's own option (not one it inherits from DEFAULT); false when there was none. */
  remove(section: string, key: string): boolean {
    const target = this.#sectionSpan(this.#model, section);
    const name = key.toLowerCase();
    const option = target?.options.get(name);
    if (option === undefined) return false;
    const next = [...this.#lines.slice(0, option.first), ...this.#lines.slice(option.last + 1)];
    const expected = snapshot(this.#model).map(([s, options]): Snapshot[number] =>
      s === section ? [s, options.filter(([k]) => k !== name)] : [s, options],
    );
    this.#commit(
      next,
      expected,
      () => `cannot remove option '${name}' of section ${sectionLabel(section)} cleanly`,
    );
    return true;
  }

  /** Appends an empty section at the end of the file, as configparser's add_section() would (DEFAULT excluded). */
  addSection(name: string): void {
    checkSectionName(name);
    if (this.#model.sections.has(name)) throw invalidEdit(`section ${sectionLabel(name)} already exists`);
    const next = this.#withSection(this.#lines, name);
    const expected = withSectionAdded(snapshot(this.#model), name);
    this.#commit(next, expected, () => `section name '${name}' cannot be written to an INI file`);
  }

  /**
   * Removes a section: its header, everything up to its last option line, and the blank lines after it (comments
   * after the last option are kept: they usually introduce the next section). False when there was no such section.
   */
  removeSection(name: string): boolean {
    const section = this.#model.sections.get(name);
    if (section === undefined) return false;
    let end = section.anchor + 1;
    while (end < this.#lines.length && pyStrip(this.#lines[end]?.text ?? '') === '') end++;
    const next = [...this.#lines.slice(0, section.header), ...this.#lines.slice(end)];
    const expected = snapshot(this.#model).filter(([s]) => s !== name);
    this.#commit(
      next,
      expected,
      () => `cannot remove section ${sectionLabel(name)} without changing the next one`,
    );
    return true;
  }

  /** The text with every edit applied; lines no edit touched are byte-identical to the parsed input. */
  toString(): string {
    return this.#lines.map((line) => line.text + line.eol).join('');
  }

  #sectionSpan(model: Model, section: string): SectionSpan | undefined {
    return section === DEFAULT_SECTION ? model.defaults : model.sections.get(section);
  }

  // The edited lines are joined and split again before parsing: a value holding a lone '\r' is one line in memory
  // but two once written, and only the text that would be written may be trusted.
  #reparse(
    edited: readonly Line[],
    expected: Snapshot,
    failure: () => string,
  ): { lines: Line[]; model: Model } {
    const lines = splitLines(edited.map((line) => line.text + line.eol).join(''));
    let model: Model;
    try {
      model = parseModel(lines, this.source);
    } catch (error: unknown) {
      throw new MailbridgeError(ErrorCode.CONFIG_INVALID, failure(), { cause: error });
    }
    if (!sameSnapshot(snapshot(model), expected)) throw invalidEdit(failure());
    return { lines, model };
  }

  #commit(edited: readonly Line[], expected: Snapshot, failure: () => string): void {
    const { lines, model } = this.#reparse(edited, expected, failure);
    this.#lines = lines;
    this.#model = model;
  }

  // Python's write() ends every section with a blank line; a new section follows that layout (and a blank line
  // separates it from a previous line that is not blank), so a document built from empty matches Python's output.
  #withSection(lines: Line[], name: string): Line[] {
    const eol = documentEol(lines);
    const next = lines.map((line) => ({ ...line }));
    const last = next.at(-1);
    if (last !== undefined) {
      if (last.eol === '') last.eol = eol;
      if (pyStrip(last.text) !== '') next.push({ text: '', eol });
    }
    next.push({ text: `[${name}]`, eol }, { text: '', eol });
    return next;
  }

  // write() puts DEFAULT first; a new [DEFAULT] block goes just before the first section header.
  #withDefaultBlock(lines: Line[], model: Model): Line[] {
    const first = model.sections.values().next();
    if (first.done === true) return this.#withSection(lines, DEFAULT_SECTION);
    const eol = documentEol(lines);
    const at = first.value.header;
    return [
      ...lines.slice(0, at),
      { text: `[${DEFAULT_SECTION}]`, eol },
      { text: '', eol },
      ...lines.slice(at),
    ];
  }

  // A new option line must not be indented deeper than the option before it (it would become that option's
  // continuation) nor shallower than the next non-comment line (which would become the new option's continuation).
  #newOptionIndent(lines: readonly Line[], section: SectionSpan): string {
    if (section.anchorIndent !== undefined) return section.anchorIndent;
    const header = lines[section.header]?.text ?? '';
    let indent = header.slice(0, leadingWhitespace(header));
    for (let i = section.anchor + 1; i < lines.length; i++) {
      const text = lines[i]?.text ?? '';
      if (isCommentOrBlank(text)) continue;
      const next = text.slice(0, leadingWhitespace(text));
      if (next.length > indent.length) indent = next;
      break;
    }
    return indent;
  }
}

function insertAfter(lines: readonly Line[], index: number, texts: readonly string[], eol: string): Line[] {
  const before = lines.slice(0, index + 1).map((line) => ({ ...line }));
  const anchor = before.at(-1);
  if (anchor !== undefined && anchor.eol === '') anchor.eol = eol;
  return [...before, ...texts.map((text) => ({ text, eol })), ...lines.slice(index + 1)];
}

function withSectionAdded(expected: Snapshot, name: string): Snapshot {
  return name === DEFAULT_SECTION ? expected : [...expected, [name, []]];
}

function withOptionSet(expected: Snapshot, section: string, key: string, value: string): Snapshot {
  return expected.map(([name, options]): Snapshot[number] => {
    if (name !== section) return [name, options];
    const replaced = options.some(([k]) => k === key);
    return [
      name,
      replaced
        ? options.map(([k, v]): [string, string] => [k, k === key ? value : v])
        : [...options, [key, value]],
    ];
  });
}

const BOOLEAN_STATES: ReadonlyMap<string, boolean> = new Map([
  ['1', true],
  ['yes', true],
  ['true', true],
  ['on', true],
  ['0', false],
  ['no', false],
  ['false', false],
  ['off', false],
]);

/** configparser's getboolean(): the eight words in any case, nothing else (not even surrounding spaces). */
export function parseBoolean(value: string): boolean | undefined {
  return BOOLEAN_STATES.get(value.toLowerCase());
}

/**
 * Python's int(text) for the values email-oauth2-proxy reads with getint() (ports, expiry times, token_iterations):
 * surrounding whitespace, a sign and single underscores between digits are accepted. Unlike Python, non-ASCII
 * decimal digits are refused, and so are values beyond Number.MAX_SAFE_INTEGER (undefined).
 */
export function parseInteger(value: string): number | undefined {
  const text = pyStrip(value);
  if (!/^[+-]?[0-9]+(?:_[0-9]+)*$/.test(text)) return undefined;
  const parsed = Number(text.replaceAll('_', ''));
  if (!Number.isSafeInteger(parsed)) return undefined;
  return parsed === 0 ? 0 : parsed;
}
