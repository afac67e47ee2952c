import type { PendingSummary } from '../authorise/control-socket.ts';
import type { ConfigStore } from '../config/store.ts';
import {
  type AccountDescription,
  describeAccounts,
  describeListener,
  formatListener,
  type ListenerDescription,
} from './config-review.ts';

/**
 * `mailbridge status`: from the files, what is cached for each account (never a token, only whether one is
 * there and when it expires) and what would listen where; from the running daemon, when one answers, the
 * authorisations waiting for a person. The daemon writes every token it gets to the files, so they are
 * current either way.
 */
export interface TokenState {
  present: boolean;
  /** ISO 8601; undefined without an expiry on file. */
  expiresAt: string | undefined;
  /** Negative once expired. */
  expiresInSeconds: number | undefined;
  /** `refresh-due`: within the 10 minutes before expiry, when the next use refreshes it. */
  state: 'valid' | 'refresh-due' | 'expired' | 'none';
}

export interface AccountStatus extends AccountDescription {
  accessToken: TokenState;
  refreshToken: boolean;
  /** Whether anything is cached: false means the account was never authorised (or its tokens were removed). */
  authorised: boolean;
  lastActivity: string | undefined;
}

export interface StatusReport {
  source: 'files' | 'files and daemon';
  configFile: string;
  cacheFile: string;
  generatedAt: string;
  listeners: ListenerDescription[];
  accounts: AccountStatus[];
  /** Only a running daemon knows them; null when none answered. */
  pendingAuthorisations: PendingSummary[] | null;
}

/** As the token service: a token this close to expiry is refreshed before use. */
const REFRESH_MARGIN_S = 600;

export function collectStatus(
  store: ConfigStore,
  nowMs: number = Date.now(),
  pending: PendingSummary[] | null = null,
): StatusReport {
  const now = Math.floor(nowMs / 1000);
  const { accounts } = describeAccounts(store);
  return {
    source: pending === null ? 'files' : 'files and daemon',
    configFile: store.configPath,
    cacheFile: store.cachePath,
    generatedAt: new Date(nowMs).toISOString(),
    listeners: store.servers().map(describeListener),
    accounts: accounts.map((account) => {
      const cached = store.cachedTokens(account.section);
      const expiry = unixSeconds(cached.access_token_expiry);
      const lastActivity = unixSeconds(cached.last_activity);
      let state: TokenState['state'] = 'none';
      if (cached.access_token) {
        if (expiry === undefined || expiry <= now) state = 'expired';
        else state = expiry - now < REFRESH_MARGIN_S ? 'refresh-due' : 'valid';
      }
      return {
        ...account,
        accessToken: {
          present: cached.access_token !== undefined,
          expiresAt: expiry === undefined ? undefined : new Date(expiry * 1000).toISOString(),
          expiresInSeconds: expiry === undefined ? undefined : expiry - now,
          state,
        },
        refreshToken: cached.refresh_token !== undefined,
        authorised: cached.access_token !== undefined || cached.refresh_token !== undefined,
        lastActivity: lastActivity === undefined ? undefined : new Date(lastActivity * 1000).toISOString(),
      };
    }),
    pendingAuthorisations: pending,
  };
}

export function formatStatus(report: StatusReport, nowMs: number = Date.now()): string {
  const lines = [
    report.pendingAuthorisations === null
      ? 'mailbridge status from the files (no running mailbridge answered)'
      : 'mailbridge status from the files and the running mailbridge',
    `  configuration: ${report.configFile}`,
    ...(report.cacheFile === report.configFile ? [] : [`  token cache:   ${report.cacheFile}`]),
    '',
    'listeners (when mailbridge runs):',
    ...(report.listeners.length === 0 ? ['  none'] : report.listeners.map((l) => `  ${formatListener(l)}`)),
    '',
    'accounts:',
  ];
  if (report.accounts.length === 0) lines.push('  none');
  for (const account of report.accounts) {
    lines.push(`  ${account.section}${account.kind === 'catch-all' ? ' (catch-all)' : ''}`);
    for (const detail of accountDetails(account, nowMs)) lines.push(`    ${detail}`);
  }
  if (report.pendingAuthorisations !== null) {
    lines.push('', 'waiting for a person (answer with `mailbridge authorise ACCOUNT`):');
    if (report.pendingAuthorisations.length === 0) lines.push('  none');
    for (const item of report.pendingAuthorisations) {
      const what =
        item.kind === 'device' ? `enter the code ${item.userCode ?? ''} at ${item.url}` : `open ${item.url}`;
      lines.push(`  ${item.account}: ${what} (since ${formatTime(item.waitingSince)})`);
    }
  }
  return `${lines.join('\n')}\n`;
}

function accountDetails(account: AccountStatus, nowMs: number): string[] {
  if (account.problem) return [`problem: ${account.problem}`];
  const details = [`flow: ${account.flow ?? '?'} via ${account.tokenHost ?? '?'}`];
  if (account.kind === 'catch-all') {
    details.push('tokens are kept per address, in a section of its own created at the first login');
    return details;
  }
  if (!account.authorised) {
    details.push(`not authorised yet: run \`mailbridge token ${account.section} --external-auth\``);
    return details;
  }
  const token = account.accessToken;
  if (!token.present) details.push('access token: none (the next use refreshes it)');
  else {
    const when = token.expiresAt
      ? `${formatTime(token.expiresAt)} (${relative(token.expiresAt, nowMs)})`
      : 'unknown';
    const words = {
      valid: `valid until ${when}`,
      'refresh-due': `expires ${when}; refreshed at the next use`,
      expired: `expired ${when}${account.refreshToken ? '; refreshed at the next use' : ''}`,
      none: 'none',
    } as const;
    details.push(`access token: ${words[token.state]}`);
  }
  details.push(
    `refresh token: ${account.refreshToken ? 'yes' : 'no (the account must be authorised again when the access token expires)'}`,
  );
  details.push(
    `last activity: ${account.lastActivity ? `${formatTime(account.lastActivity)} (${relative(account.lastActivity, nowMs)})` : 'never recorded'}`,
  );
  return details;
}

function unixSeconds(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value.trim());
  return Number.isFinite(number) ? Math.trunc(number) : undefined;
}

/** Local time, to the minute: `2026-11-05 14:03`. */
export function formatTime(iso: string): string {
  const date = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** `in 52 min`, `3 h ago`, `12 d ago`. */
export function relative(iso: string, nowMs: number): string {
  const seconds = Math.round((new Date(iso).getTime() - nowMs) / 1000);
  const magnitude = Math.abs(seconds);
  const amount =
    magnitude < 90
      ? `${magnitude} s`
      : magnitude < 90 * 60
        ? `${Math.round(magnitude / 60)} min`
        : magnitude < 36 * 3600
          ? `${Math.round(magnitude / 3600)} h`
          : `${Math.round(magnitude / 86400)} d`;
  return seconds >= 0 ? `in ${amount}` : `${amount} ago`;
}
