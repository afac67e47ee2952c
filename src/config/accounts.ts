import { ErrorCode, MailbridgeError } from '../errors.ts';
import { type IniDocument, parseBoolean } from './ini.ts';
import { isServerSection } from './servers.ts';

/**
 * The typed view of account sections (email-oauth2-proxy §2.3) and of the `[emailproxy]` section (§2.4).
 */
export interface GlobalOptions {
  /** False unless set explicitly: one typo must not wipe tokens (the original defaults to True). */
  deleteAccountTokenOnPasswordError: boolean;
  encryptClientSecretOnFirstUse: boolean;
  useLoginPasswordAsClientCredentialsSecret: boolean;
  allowCatchAllAccounts: boolean;
  /** How long a client waits for a person to authorise before it gets a clean failure (the request stays open). */
  authorisationWaitSeconds: number;
  /** A shell command run when an account needs a person, and again every notify interval while it waits. */
  authorisationNotifyCommand: string | undefined;
  authorisationNotifyIntervalSeconds: number;
  /** Each unlocked account's refresh token is used at least this often, so it never dies of inactivity. */
  refreshIntervalHours: number;
}

export const GLOBAL_SECTION = 'emailproxy';

/** The original's AUTHENTICATION_TIMEOUT. */
const DEFAULT_AUTHORISATION_WAIT_S = 600;
const DEFAULT_NOTIFY_INTERVAL_S = 300;
/** Microsoft's refresh tokens die after 90 days unused, Google's Testing apps' after 7: daily is safe. */
const DEFAULT_REFRESH_INTERVAL_H = 24;

export function readGlobals(doc: IniDocument): GlobalOptions {
  const text = (key: string) => {
    const value = doc.hasSection(GLOBAL_SECTION) ? doc.get(GLOBAL_SECTION, key)?.trim() : undefined;
    return value ? value : undefined;
  };
  const flag = (key: string) => parseBoolean(text(key) ?? '') ?? false;
  const whole = (key: string, fallback: number, unit: string) => {
    const value = text(key);
    if (value === undefined) return fallback;
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed <= 0) {
      throw new MailbridgeError(
        ErrorCode.CONFIG_INVALID,
        `[${GLOBAL_SECTION}] ${key} = '${value}' is not a whole number of ${unit}`,
      );
    }
    return parsed;
  };
  return {
    deleteAccountTokenOnPasswordError: flag('delete_account_token_on_password_error'),
    encryptClientSecretOnFirstUse: flag('encrypt_client_secret_on_first_use'),
    useLoginPasswordAsClientCredentialsSecret: flag('use_login_password_as_client_credentials_secret'),
    allowCatchAllAccounts: flag('allow_catch_all_accounts'),
    authorisationWaitSeconds: whole('authorisation_wait', DEFAULT_AUTHORISATION_WAIT_S, 'seconds'),
    authorisationNotifyCommand: text('authorisation_notify_command'),
    authorisationNotifyIntervalSeconds: whole(
      'authorisation_notify_interval',
      DEFAULT_NOTIFY_INTERVAL_S,
      'seconds',
    ),
    refreshIntervalHours: whole('refresh_interval_hours', DEFAULT_REFRESH_INTERVAL_H, 'hours'),
  };
}

export interface AccountConfig {
  /** The section that holds this account's settings. */
  section: string;
  /** The login name as the client sent it: also the SASL user upstream. */
  username: string;
  permissionUrl: string | undefined;
  tokenUrl: string;
  scope: string;
  flow: string;
  redirectUri: string | undefined;
  redirectListenAddress: string | undefined;
  clientId: string;
  clientSecret: string | undefined;
  clientSecretEncrypted: string | undefined;
  usePkce: boolean;
  /** `oauth2_resource`, sent with the password grant (Azure China). */
  resource: string | undefined;
  /** Certificate credentials instead of a client secret (Microsoft): PEM paths. */
  jwtCertificatePath: string | undefined;
  jwtKeyPath: string | undefined;
}

/** Grants that need nobody at a browser: the token comes from the token endpoint alone. */
export const DIRECT_FLOWS = ['client_credentials', 'password', 'service_account'] as const;

export function isDirectFlow(flow: string): boolean {
  return (DIRECT_FLOWS as readonly string[]).includes(flow);
}

/** The cached token fields of an account section, as email-oauth2-proxy writes them (§3.1). */
export const CACHED_KEYS = [
  'token_salt',
  'token_iterations',
  'access_token',
  'access_token_expiry',
  'refresh_token',
  'last_activity',
  'client_secret_encrypted',
] as const;

export type CachedKey = (typeof CACHED_KEYS)[number];

export function isAccountSection(name: string): boolean {
  return name.includes('@') && !isServerSection(name) && name !== GLOBAL_SECTION;
}

/**
 * The sections an account's settings come from, most specific first: its own, then with
 * allow_catch_all_accounts `[@domain]` and `[@]` (email-oauth2-proxy §2.3). Empty when none exists. Lookup is
 * by exact, case-sensitive section name, as the original does.
 */
export function accountSections(doc: IniDocument, username: string, allowCatchAll: boolean): string[] {
  if (!isAccountSection(username)) return [];
  const domain = username.slice(username.lastIndexOf('@'));
  const candidates = allowCatchAll ? [username, domain, '@'] : [username];
  return candidates.filter((section) => doc.hasSection(section));
}

/** The configured account for a login name; undefined when there is none. */
export function findAccount(
  doc: IniDocument,
  username: string,
  allowCatchAll = false,
): AccountConfig | undefined {
  const sections = accountSections(doc, username, allowCatchAll);
  if (sections.length === 0) return undefined;
  const value = (key: string) => {
    for (const section of sections) {
      const text = doc.get(section, key)?.trim();
      if (text) return text;
    }
    return undefined;
  };
  const where =
    sections.length > 1 || sections[0] !== username
      ? ` (settings from ${sections.map((s) => `[${s}]`).join(', ')})`
      : '';
  const incomplete = (problem: string) =>
    new MailbridgeError(ErrorCode.ACCOUNT_INCOMPLETE, `account '${username}'${where} ${problem}`);
  const tokenUrl = value('token_url');
  const clientId = value('client_id');
  const permissionUrl = value('permission_url');
  const configuredFlow = value('oauth2_flow');
  // With a permission_url every flow but the device grant is the authorisation-code grant (§2.3).
  const flow =
    permissionUrl && configuredFlow !== 'device' ? 'authorization_code' : (configuredFlow ?? undefined);
  const scope = value('oauth2_scope') ?? '';
  const resource = value('oauth2_resource');
  if (!tokenUrl || !clientId || (!scope && !(flow === 'password' && resource))) {
    throw incomplete('is incomplete: set at least token_url, oauth2_scope and client_id');
  }
  if (!flow) {
    throw incomplete('has no permission_url: set oauth2_flow to the grant to use (e.g. client_credentials)');
  }
  checkEndpoint(username, 'token_url', tokenUrl);
  if (permissionUrl) checkEndpoint(username, 'permission_url', permissionUrl);
  const pkce = value('use_pkce');
  return {
    // Tokens always live in the user's own section, created on first save for a catch-all account.
    section: username,
    username,
    permissionUrl,
    tokenUrl,
    scope,
    flow,
    redirectUri: value('redirect_uri'),
    redirectListenAddress: value('redirect_listen_address'),
    clientId,
    clientSecret: value('client_secret'),
    // Written by mailbridge into the user's own section only.
    clientSecretEncrypted: doc.hasSection(username)
      ? doc.get(username, 'client_secret_encrypted')?.trim() || undefined
      : undefined,
    // The original enables PKCE for any non-empty value, `False` included; we read it as a boolean.
    usePkce: pkce === undefined ? false : (parseBoolean(pkce) ?? true),
    resource,
    jwtCertificatePath: value('jwt_certificate_path'),
    jwtKeyPath: value('jwt_key_path'),
  };
}

/**
 * Endpoints are checked when the account is read, not at the first token call, which may come only after a
 * person has signed in. Tokens travel over https; plain http is allowed on loopback, for local test servers.
 */
function checkEndpoint(username: string, key: string, value: string): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new MailbridgeError(
      ErrorCode.ACCOUNT_INCOMPLETE,
      `account '${username}': ${key} '${value}' is not a URL`,
    );
  }
  const loopback =
    url.hostname === 'localhost' || url.hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new MailbridgeError(
      ErrorCode.ACCOUNT_INCOMPLETE,
      `account '${username}': ${key} must be an https URL (plain http only on loopback), not '${value}'`,
    );
  }
}
