import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';

/**
 * Scenarios that change the network (nameservers, interfaces, /etc/hosts) run as a separate script inside
 * `unshare -m -n`: private mount and network namespaces, so nothing they do reaches the machine or its
 * network. The script prints one JSON report as its last line; the test file makes the assertions.
 */
export const CAN_UNSHARE = process.getuid?.() === 0 && process.platform === 'linux';

const ROOT = join(import.meta.dirname, '..', '..');

export async function runScenarioInNamespaces<Report extends { error?: string }>(
  script: string,
  args: string[],
  timeoutMs: number,
): Promise<Report> {
  const child = spawn('unshare', ['-m', '-n', '--', process.execPath, '--import', 'tsx', script, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  // `unshare` without --fork runs the scenario in its own process, which stops its children on SIGTERM.
  const timer = setTimeout(() => {
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  }, timeoutMs);
  const code = await new Promise<number | null>((resolve) =>
    child.once('exit', (exitCode) => resolve(exitCode)),
  );
  clearTimeout(timer);
  const last = stdout.trim().split('\n').pop() ?? '';
  let report: Report;
  try {
    report = JSON.parse(last) as Report;
  } catch {
    assert.fail(`the scenario (exit ${code}) printed no report:\n${stdout}\n${stderr}`);
  }
  assert.equal(report.error, undefined, `the scenario failed: ${report.error}\n${stderr}`);
  return report;
}
