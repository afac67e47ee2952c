import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCode, isMailbridgeError } from '../../../src/errors.ts';
import { defaultDatabasePath } from '../../../src/thread/database-path.ts';
import { parseDuration } from '../../../src/thread/duration.ts';
import { formatThreadLine, parseThreadFile } from '../../../src/thread/import-format.ts';

describe('defaultDatabasePath', () => {
  it('is in $XDG_DATA_HOME when it is absolute, in ~/.local/share otherwise', () => {
    const homedir = '/home/alice';
    assert.equal(
      defaultDatabasePath({ env: { XDG_DATA_HOME: '/data' }, homedir }),
      '/data/mailbridge/threads.sqlite',
    );
    for (const env of [{}, { XDG_DATA_HOME: '' }, { XDG_DATA_HOME: 'relative/dir' }]) {
      assert.equal(
        defaultDatabasePath({ env, homedir }),
        '/home/alice/.local/share/mailbridge/threads.sqlite',
      );
    }
  });
});

describe('parseDuration', () => {
  it('reads hours, days, weeks and years', () => {
    const hour = 3600 * 1000;
    assert.equal(parseDuration('12h'), 12 * hour);
    assert.equal(parseDuration('180d'), 180 * 24 * hour);
    assert.equal(parseDuration(' 2w '), 14 * 24 * hour);
    assert.equal(parseDuration('1y'), 365 * 24 * hour);
  });

  it('refuses months-or-minutes, missing units and fractions', () => {
    for (const text of ['6m', '180', 'd', '1.5d', '-3d', '', '1234567d']) {
      assert.throws(
        () => parseDuration(text),
        (error: unknown) => isMailbridgeError(error, ErrorCode.THREAD_INVALID_ARGUMENT),
      );
    }
  });
});

describe('the one-thread-per-line format', () => {
  it('reads IDs with or without brackets, skipping blank and # lines, CRLF or LF', () => {
    const parsed = parseThreadFile('<1@x> 2@x\r\n\r\n   \n# a comment <9@x>\n\t<3@x>  <3@x>\n');
    assert.deepEqual(parsed, { threads: [['1@x', '2@x'], ['3@x']], badLines: [] });
  });

  it('keeps the IDs of a line that also has junk, and reports the line', () => {
    assert.deepEqual(parseThreadFile('<1@x> <bad\n<a<b> junk\n<2@x> no-at-sign <ok>'), {
      threads: [['1@x'], ['2@x', 'ok']],
      badLines: [1, 2, 3],
    });
  });

  it('writes what it reads', () => {
    const line = formatThreadLine(['1@x', 'café@x']);
    assert.equal(line, '<1@x> <café@x>');
    assert.deepEqual(parseThreadFile(line).threads, [['1@x', 'café@x']]);
  });
});
