import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { MAILBRIDGE_BIN } from '../testbed/mailbridge.ts';
import { CAN_UNSHARE, runScenarioInNamespaces } from '../testbed/namespaces.ts';

/**
 * The nameserver change that wedged a long-running proxy for good (reference/dns-resilience.md), replayed
 * against the real program as root in private mount and network namespaces, with glibc's pre-fix behaviour
 * emulated by an LD_PRELOAD shim compiled here. dns/scenario.ts does the steps and reports; this file asserts.
 *
 * It proves three things. The scenario reproduces the bug: Python's getaddrinfo and Node's plain dns.lookup,
 * long-running under the same shim, do not recover (the negative controls: a daemon resolving like them
 * fails this test). mailbridge does recover: every connection after the change reaches the new address,
 * and its log names the stale resolver. And the new configuration is fine for anyone who reads it: a
 * process started after the change resolves (the positive control).
 */
const run = promisify(execFile);
const SCENARIO_TIMEOUT_MS = 120_000;
const NEW_ADDRESS = '127.0.0.9';

interface Report {
  error?: string;
  phase1: { connections: number; reachedOld: number; replies: string[] };
  rounds: { reachedNew: number; reachedOld: number; failed: number; replies: string[] }[];
  phase2Ms: number;
  fallbackWarnings: number;
  staleResolverWarnings: number;
  staleResolverAdvice: boolean;
  nodeControlAfter: string[];
  pythonControlAfter: string[];
  freshProcess: string[];
  newNameserverQueries: number;
  logTail: string;
  mailbridgeExit: number | null;
}

let dir: string;
let report: Report;

describe('DNS: surviving a nameserver change with a stale system resolver', {
  skip: !CAN_UNSHARE && 'needs root on Linux (unshare)',
}, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-dns-'));
    const shim = join(dir, 'resolver-shim.so');
    await run(
      'cc',
      ['-shared', '-fPIC', '-O2', '-o', shim, join(import.meta.dirname, 'dns', 'resolver-shim.c'), '-ldl'],
      {
        timeout: 60_000,
      },
    );
    report = await runScenarioInNamespaces<Report>(
      join(import.meta.dirname, 'dns', 'scenario.ts'),
      [dir, shim, MAILBRIDGE_BIN],
      SCENARIO_TIMEOUT_MS,
    );
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reproduces the bug: long-running processes under the shim stay on the dead nameserver (negative controls)', (t) => {
    const python = report.pythonControlAfter;
    assert.ok(python.length >= 5, `python control: ${python}`);
    // Its lookup in flight at the change may still finish with the old answer; none ever gets the new one.
    assert.ok(!python.includes(NEW_ADDRESS), `python recovered, so the scenario did not wedge it: ${python}`);
    assert.ok(
      python.slice(1).every((line) => line.startsWith('error')),
      `python: ${python}`,
    );
    const node = report.nodeControlAfter.flatMap((line) => line.split(' '));
    assert.ok(node.length >= 20, `node control: ${node}`);
    // The assertion mailbridge must pass below (every connection reaches the new address) fails for it.
    assert.ok(
      node.some((result) => result !== NEW_ADDRESS),
      'plain dns.lookup recovered fully, so this scenario could not tell a fixed daemon from a broken one',
    );
    t.diagnostic(
      `after the change, python: ${python.filter((line) => line === NEW_ADDRESS).length}/${python.length} lookups resolved; ` +
        `node dns.lookup: ${node.filter((result) => result === NEW_ADDRESS).length}/${node.length}`,
    );
  });

  it('shows the new configuration works for a process started after the change (positive control)', () => {
    assert.deepEqual(report.freshProcess, [NEW_ADDRESS]);
    assert.ok(report.newNameserverQueries > 0);
  });

  it('reaches the upstream through the half-answering nameserver before the change', () => {
    assert.equal(report.phase1.reachedOld, report.phase1.connections, JSON.stringify(report.phase1));
  });

  it('reaches the new address with every connection after the change, and logs the stale resolver once', (t) => {
    assert.ok(report.rounds.length >= 5);
    for (const [i, round] of report.rounds.entries()) {
      assert.deepEqual(
        { reachedNew: round.reachedNew, reachedOld: round.reachedOld, failed: round.failed },
        { reachedNew: 4, reachedOld: 0, failed: 0 },
        `round ${i + 1}: ${round.replies.join(' | ')}\nlog:\n${report.logTail}`,
      );
    }
    // The daemon's own system resolver was stuck too: the fresh-query fallback is what answered.
    assert.ok(report.fallbackWarnings >= 1, report.logTail);
    // One warning with the way out; the repeats go to debug so a stuck host does not flood the journal.
    assert.equal(report.staleResolverWarnings, 1, report.logTail);
    assert.equal(report.staleResolverAdvice, true);
    assert.equal(report.mailbridgeExit, 0);
    t.diagnostic(
      `${report.rounds.length * 4} connections after the change, all to ${NEW_ADDRESS}, in ${report.phase2Ms} ms; ${report.fallbackWarnings} answered by the fallback`,
    );
  });
});
