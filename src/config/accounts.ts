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
}

export const GLOBAL_SECTION = 'emailproxy';

export function readGlobals(doc: IniDocument): GlobalOptions {
  const flag = (key: string) => {
    const value = doc.hasSection(GLOBAL_SECTION) ? doc.get(GLOBAL_SECTION, key) : undefined;
    return value === undefined ? false : (parseBoolean(value) ?? false);
  };
  return {
    deleteAccountTokenOnPasswordError: flag('delete_account_token_on_password_error'),
    encryptClientSecretOnFirstUse: flag('encrypt_client_secret_on_first_use'),
    useLoginPasswordAsClientCredentialsSecret: flag('use_login_password_as_client_credentials_secret'),
    allowCatchAllAccounts: flag('allow_catch_all_accounts'),
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
 * The configured account for a login name. Lookup is by exact, case-sensitive section name, as the
 * original does; undefined when there is none.
 */
export function findAccount(doc: IniDocument, username: string): AccountConfig | undefined {
  if (!isAccountSection(username) || !doc.hasSection(username)) return undefined;
  const value = (key: string) => {
    const text = doc.get(username, key)?.trim();
    return text ? text : undefined;
  };
  const tokenUrl = value('token_url');
  const scope = value('oauth2_scope');
  const clientId = value('client_id');
  if (!tokenUrl || !scope || !clientId) {
    throw new MailbridgeError(
      ErrorCode.ACCOUNT_INCOMPLETE,
      `account '${username}' is incomplete: set at least token_url, oauth2_scope and client_id in its section`,
    );
  }
  checkEndpoint(username, 'token_url', tokenUrl);
  const permissionUrl = value('permission_url');
  if (permissionUrl) checkEndpoint(username, 'permission_url', permissionUrl);
  const flow = value('oauth2_flow') ?? (permissionUrl ? 'authorization_code' : undefined);
  if (!flow) {
    throw new MailbridgeError(
      ErrorCode.ACCOUNT_INCOMPLETE,
      `account '${username}' has no permission_url: set oauth2_flow to the grant to use (e.g. client_credentials)`,
    );
  }
  const pkce = value('use_pkce');
  return {
    section: username,
    username,
    permissionUrl,
    tokenUrl,
    scope,
    // With a permission_url every flow but the device grant is the authorisation-code grant (§2.3).
    flow: permissionUrl && flow !== 'device' ? 'authorization_code' : flow,
    redirectUri: value('redirect_uri'),
    redirectListenAddress: value('redirect_listen_address'),
    clientId,
    clientSecret: value('client_secret'),
    clientSecretEncrypted: value('client_secret_encrypted'),
    // The original enables PKCE for any non-empty value, `False` included; we read it as a boolean.
    usePkce: pkce === undefined ? false : (parseBoolean(pkce) ?? true),
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
