import type { ConfigStore } from '../config/store.ts';
import { describeError } from '../errors.ts';
import type { HostResolver } from '../net/resolve.ts';
import { identityPlatform } from '../oauth/providers.ts';
import { CLOCK_SKEW_LIMIT_S, describeSkew, measureSkew } from './clock.ts';
import { reviewConfig } from './config-review.ts';
import { explainTokenFailure } from './explain.ts';
import { type Check, countProblems, type DoctorReport, type ServerReport } from './report.ts';
import { checkServer } from './server-check.ts';
import { formatTime, relative } from './status.ts';
import { claimProblems, describeClaims, peekClaims } from './token-claims.ts';

/**
 * `mailbridge doctor`: the configuration review, then the account (clock, cached tokens, a usable access
 * token), then every server section end to end with that token. Servers are checked one after another, so
 * the report reads in order and a slow server cannot hide behind a fast one.
 */
export interface AccessTokenProvider {
  accessToken(account: string): Promise<string>;
}

export interface DoctorOptions {
  store: ConfigStore;
  /** The account to log in as; undefined checks the servers up to their capabilities only. */
  account: string | undefined;
  /** Where tokens come from (and where its password came from, for messages), or why there are none. */
  tokens: { provider: AccessTokenProvider; passwordOrigin: string } | string;
  resolver: HostResolver;
  /** Each network wait: connect, TLS handshake, one reply. */
  timeoutMs: number;
  fetch?: typeof fetch;
  now?: () => number;
}

export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const now = options.now ?? Date.now;
  const review = await reviewConfig(options.store);
  const accountChecks: Check[] = [];
  let login: Parameters<typeof checkServer>[1]['login'] =
    typeof options.tokens === 'string' ? options.tokens : 'no account given: run `mailbridge doctor ACCOUNT`';

  if (options.account !== undefined) {
    login = await checkAccount(options, options.account, accountChecks, now);
  }

  const servers: ServerReport[] = [];
  for (const server of options.store.servers()) {
    servers.push(
      await checkServer(server, { resolver: options.resolver, timeoutMs: options.timeoutMs, login, now }),
    );
  }
  const partial = { findings: review.findings, accountChecks, servers };
  return { configFile: review.configFile, account: options.account, ...partial, ...countProblems(partial) };
}

async function checkAccount(
  options: DoctorOptions,
  account: string,
  checks: Check[],
  now: () => number,
): Promise<Parameters<typeof checkServer>[1]['login']> {
  const skipped = `no token for ${account}: see the account checks above`;
  let config: ReturnType<ConfigStore['account']>;
  try {
    config = options.store.account(account);
  } catch (error: unknown) {
    checks.push({ step: 'account', status: 'fail', summary: describeError(error) });
    return skipped;
  }
  if (!config) {
    checks.push({
      step: 'account',
      status: 'fail',
      summary: `no section [${account}] in ${options.store.configPath}`,
      advice: `account names are matched exactly, case included: add a section [${account}] (mailbridge init writes one) or use the name of an existing one`,
    });
    return skipped;
  }
  checks.push({
    step: 'account',
    status: 'ok',
    summary: `${config.flow} via ${new URL(config.tokenUrl).host}`,
  });

  await clockCheck(options, config.tokenUrl, checks, now);

  const before = options.store.cachedTokens(config.section);
  if (!before.access_token && !before.refresh_token) {
    checks.push({
      step: 'cache',
      status: 'warn',
      summary: 'no cached tokens: the account was never authorised',
    });
  } else if (!before.refresh_token) {
    const microsoft = identityPlatform(config.tokenUrl) === 'microsoft';
    checks.push({
      step: 'cache',
      status: 'warn',
      summary: 'an access token but no refresh token is cached',
      advice: `without a refresh token the account must be authorised again whenever the access token expires${microsoft ? ': add offline_access to oauth2_scope (Microsoft issues refresh tokens only then) and authorise again' : ': check that oauth2_scope allows offline access'}`,
    });
  } else {
    checks.push({ step: 'cache', status: 'ok', summary: 'access and refresh tokens cached' });
  }

  if (typeof options.tokens === 'string') {
    checks.push({ step: 'token', status: 'skip', summary: options.tokens });
    return options.tokens;
  }
  let accessToken: string;
  try {
    accessToken = await options.tokens.provider.accessToken(account);
  } catch (error: unknown) {
    checks.push({
      step: 'token',
      status: 'fail',
      summary: describeError(error),
      advice: explainTokenFailure(error, account, options.tokens.passwordOrigin),
    });
    return skipped;
  }
  const after = options.store.cachedTokens(config.section);
  const expiry = Number(after.access_token_expiry);
  const expiryText = Number.isFinite(expiry)
    ? `valid until ${formatTime(new Date(expiry * 1000).toISOString())} (${relative(new Date(expiry * 1000).toISOString(), now())})`
    : 'expiry unknown';
  const how = after.access_token !== before.access_token ? 'obtained just now' : 'from the cache';
  const claims = peekClaims(accessToken);
  checks.push({
    step: 'token',
    status: 'ok',
    summary: `${expiryText}, ${how}${claims ? `; ${describeClaims(claims)}` : ''}`,
  });
  const problems = claims ? claimProblems(claims, account, Math.floor(now() / 1000)) : [];
  for (const problem of problems) {
    checks.push({
      step: 'token claims',
      status: 'warn',
      summary: 'the token itself shows a problem',
      advice: problem,
    });
  }
  return { username: account, accessToken, claims };
}

async function clockCheck(options: DoctorOptions, tokenUrl: string, checks: Check[], now: () => number) {
  try {
    const reading = await measureSkew(tokenUrl, { fetch: options.fetch, timeoutMs: options.timeoutMs, now });
    if (!reading) {
      checks.push({
        step: 'clock',
        status: 'skip',
        summary: 'the token endpoint sent no Date header to compare with',
      });
      return;
    }
    const skewed = Math.abs(reading.skewSeconds) > CLOCK_SKEW_LIMIT_S;
    checks.push({
      step: 'clock',
      status: skewed ? 'warn' : 'ok',
      summary: describeSkew(reading),
      ...(skewed
        ? {
            advice:
              'clock skew: certificates may look expired or not yet valid and providers refuse requests outside about five minutes; turn on time synchronisation (timedatectl set-ntp true)',
          }
        : {}),
    });
  } catch (error: unknown) {
    checks.push({
      step: 'clock',
      status: 'skip',
      summary: `could not ask the token endpoint for the time: ${fetchFailure(error)}`,
    });
  }
}

/** fetch() says only "fetch failed"; the reason (ENOTFOUND, ECONNREFUSED, a timeout) is in its cause. */
function fetchFailure(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  const detail =
    typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : '';
  return detail ? `${describeError(error)} (${detail})` : describeError(error);
}
