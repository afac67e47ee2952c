import { spawnSync } from 'node:child_process';
import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DovecotInstance } from '../../test/testbed/dovecot.ts';
import { readMasterPid } from '../../test/testbed/dovecot-daemon.ts';
import { signal } from '../../test/testbed/processes.ts';

/**
 * The test bed's Dovecot is sized for tests: one imap-login process per connection (service_count = 1) and
 * at most 100 of them, so it cannot hold 1,000 TLS sessions at once (with imaps the login process stays to
 * carry the TLS of the whole session). The benchmark switches the login service to Dovecot's
 * "high-performance" mode and raises the process and client limits, for the direct and the proxied runs
 * alike, by appending to the instance's config and reloading it (SIGHUP to the master we started).
 *
 * mail_max_userip_connections (200 per user and IP) stays as the test bed sets it: the benchmark spreads its
 * sessions over several accounts instead, as a proxy serving a small office would.
 */
export const DOVECOT_TUNING = [
  // High-performance login mode: a few processes each serve many clients (doc.dovecot.org, login processes).
  'service imap-login {',
  '  service_count = 0',
  '  process_min_avail = 2',
  '  client_limit = 4000',
  '}',
  'service submission-login {',
  '  service_count = 0',
  '  process_min_avail = 1',
  '  client_limit = 1000',
  '}',
  // One imap process per session (client_limit = 1): 1,000 sessions need more than the default 1,024 with
  // the odd straggler of the run before still exiting.
  'service imap {',
  '  process_limit = 2500',
  '}',
  // Every process of the instance connects to log, anvil, config and auth: their client limits follow this.
  'default_client_limit = 6000',
];

const RELOAD_TIMEOUT_MS = 15_000;

export async function tuneDovecot(dovecot: DovecotInstance): Promise<string[]> {
  const config = join(dovecot.dir, 'dovecot.conf');
  await appendFile(config, `\n# Appended by bench/proxy/dovecot-tuning.ts\n${DOVECOT_TUNING.join('\n')}\n`);
  // Checked before the reload: a master that cannot parse its new config keeps the old one and only logs it.
  const check = spawnSync('doveconf', ['-c', config, '-n'], { encoding: 'utf8', timeout: 10_000 });
  if (check.status !== 0) throw new Error(`dovecot rejects the tuning: ${check.stderr}`);
  const pid = await readMasterPid(dovecot.dir);
  if (pid === undefined) throw new Error('dovecot master not running: cannot reload its configuration');
  // Dovecot creates its log file at the first line it writes.
  const readLog = () => readFile(dovecot.logPath, 'utf8').catch(() => '');
  const logBefore = (await readLog()).length;
  signal(pid, 'SIGHUP');
  const deadline = Date.now() + RELOAD_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const log = (await readLog()).slice(logBefore);
    if (/SIGHUP received - reloading configuration/.test(log)) {
      // The master has re-read the file; give it a moment to start the new login processes.
      await sleep(1000);
      return DOVECOT_TUNING;
    }
    await sleep(100);
  }
  throw new Error(`dovecot did not log a configuration reload within ${RELOAD_TIMEOUT_MS} ms`);
}
