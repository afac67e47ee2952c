import type { Finding } from './config-review.ts';

/**
 * The doctor's findings: one line per step, and for a step that failed (or deserves a warning) the advice in
 * plain words below it.
 */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface Check {
  step: string;
  status: CheckStatus;
  summary: string;
  /** What it means and what to do; present for every failure the doctor can explain. */
  advice?: string;
}

export interface ServerReport {
  section: string;
  protocol: string;
  /** `host:port (TLS|STARTTLS)`. */
  upstream: string;
  checks: Check[];
}

export interface DoctorReport {
  configFile: string;
  /** The account whose token was used for the logins; undefined when none could be chosen. */
  account: string | undefined;
  findings: Finding[];
  accountChecks: Check[];
  servers: ServerReport[];
  /** Failed checks and configuration errors. */
  problems: number;
  warnings: number;
}

const LABELS: Readonly<Record<CheckStatus, string>> = {
  ok: 'ok  ',
  warn: 'warn',
  fail: 'FAIL',
  skip: 'skip',
};

export function formatReport(report: DoctorReport): string {
  const lines = [`mailbridge doctor: ${report.configFile}`];
  if (report.findings.length > 0) {
    lines.push('', 'configuration:');
    for (const finding of report.findings) {
      const label = finding.severity === 'error' ? LABELS.fail : LABELS.warn;
      lines.push(`  ${label}  ${finding.where ? `[${finding.where}] ` : ''}${finding.message}`);
    }
  }
  if (report.accountChecks.length > 0) {
    lines.push('', `account ${report.account ?? '(none)'}`);
    lines.push(...report.accountChecks.flatMap(formatCheck));
  }
  for (const server of report.servers) {
    lines.push('', `[${server.section}] ${server.protocol} -> ${server.upstream}`);
    lines.push(...server.checks.flatMap(formatCheck));
  }
  lines.push('');
  const skipped = [...report.accountChecks, ...report.servers.flatMap((server) => server.checks)].filter(
    (check) => check.status === 'skip',
  ).length;
  if (report.problems === 0) {
    const notes = [
      ...(report.warnings > 0 ? [`${report.warnings} warning${report.warnings === 1 ? '' : 's'}`] : []),
      ...(skipped > 0 ? [`${skipped} check${skipped === 1 ? '' : 's'} skipped`] : []),
    ];
    lines.push(
      `${skipped > 0 ? 'everything checked works' : 'everything works'}${notes.length > 0 ? `, with ${notes.join(' and ')} above` : ''}`,
    );
  } else {
    lines.push(
      `${report.problems} problem${report.problems === 1 ? '' : 's'} found: see the advice under each FAIL`,
    );
  }
  return `${lines.join('\n')}\n`;
}

function formatCheck(check: Check): string[] {
  const lines = [`  ${LABELS[check.status]}  ${check.step.padEnd(12)}  ${check.summary}`];
  if (check.advice) lines.push(`        -> ${check.advice}`);
  return lines;
}

export function countProblems(report: Pick<DoctorReport, 'findings' | 'accountChecks' | 'servers'>): {
  problems: number;
  warnings: number;
} {
  const checks = [...report.accountChecks, ...report.servers.flatMap((server) => server.checks)];
  return {
    problems:
      report.findings.filter((finding) => finding.severity === 'error').length +
      checks.filter((check) => check.status === 'fail').length,
    warnings:
      report.findings.filter((finding) => finding.severity === 'warning').length +
      checks.filter((check) => check.status === 'warn').length,
  };
}
