import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CAN_UNSHARE, runScenarioInNamespaces } from '../testbed/namespaces.ts';

/**
 * Broken IPv6 (an address that never answers) in front of a working IPv4 address, servers whose every address
 * fails, and one whose packets vanish until mailbridge's bound on connecting ends the wait: against the real
 * program, the test bed's Dovecot and Python's imaplib, in private network namespaces.
 * happy-eyeballs/scenario.ts does the steps and reports; this file asserts.
 */
const SCENARIO_TIMEOUT_MS = 120_000;

interface Report {
  error?: string;
  addresses: string[];
  firstAddressOnly: string;
  login: { code: number; stdout: string; stderr: string };
  unreachable: string;
  refused: string;
  silent: string;
  log: string;
}

let dir: string;
let report: Report;

describe('Happy Eyeballs: an upstream name whose first address never answers', {
  skip: !CAN_UNSHARE && 'needs root on Linux (unshare)',
}, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-eyeballs-'));
    report = await runScenarioInNamespaces<Report>(
      join(import.meta.dirname, 'happy-eyeballs', 'scenario.ts'),
      [dir],
      SCENARIO_TIMEOUT_MS,
    );
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('puts the dead IPv6 address first, where a single-address client fails (the control)', () => {
    assert.deepEqual(report.addresses, ['2001:db8::2', '127.0.0.1']);
    assert.equal(report.firstAddressOnly, 'EHOSTUNREACH');
  });

  it('logs in and reads mail through the next address', () => {
    assert.equal(report.login.code, 0, report.login.stderr);
    assert.equal(
      report.login.stdout,
      'From: Bob <bob@example.test>\r\nSubject: hello\r\n\r\nHello Alice\r\n',
    );
    assert.match(
      report.log,
      /\[IMAP-1993 \d+ alice@example\.test\] authenticated 'alice@example\.test' upstream/,
    );
  });

  it('tells the client, and the log, how each address of an unreachable server failed', () => {
    assert.match(
      report.unreachable,
      /^\* BYE \[UNAVAILABLE\] mailbridge: cannot reach dead\.test:\d+: no address answered: \[2001:db8::2\] (no answer \(ETIMEDOUT\)|unreachable \(EHOSTUNREACH\)), \[2001:db8::3\] unreachable \(EHOSTUNREACH\) - is there a network connection\?\r\n$/,
    );
    assert.match(
      report.refused,
      /^\* BYE \[UNAVAILABLE\] mailbridge: cannot reach refused\.test:\d+: no address answered: 127\.0\.0\.2 refused \(ECONNREFUSED\), 127\.0\.0\.3 refused \(ECONNREFUSED\) - check server_port and that the server is up\r\n$/,
    );
    assert.match(
      report.log,
      /WARN {2}\[IMAP-1994 \d+\] could not open the upstream connection error=cannot reach dead\.test/,
    );
  });

  it('gives up on a server whose packets vanish after its bound on connecting, and says so', () => {
    assert.match(
      report.silent,
      /^\* BYE \[UNAVAILABLE\] mailbridge: cannot reach silent\.test:\d+: no connection within 30 s\r\n$/,
    );
  });
});
