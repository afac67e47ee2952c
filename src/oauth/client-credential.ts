import { readFile } from 'node:fs/promises';
import type { AccountConfig } from '../config/accounts.ts';
import { ErrorCode, MailbridgeError } from '../errors.ts';
import { clientAssertion, serviceAccountAssertion } from './jwt.ts';
import type { ClientCredential } from './token-client.ts';

/**
 * How an account's OAuth client proves itself: a secret (configured, decrypted from
 * client_secret_encrypted, or the login password with use_login_password_as_client_credentials_secret), a
 * certificate (jwt_certificate_path + jwt_key_path), or nothing (a public client, PKCE or device flow).
 */
export async function clientCredential(
  account: AccountConfig,
  secret: string | undefined,
  now: () => number,
): Promise<ClientCredential> {
  if (secret) return { kind: 'secret', secret };
  if (account.jwtCertificatePath && account.jwtKeyPath) {
    const [certificatePem, privateKeyPem] = await Promise.all([
      readConfigured(account, 'jwt_certificate_path', account.jwtCertificatePath),
      readConfigured(account, 'jwt_key_path', account.jwtKeyPath),
    ]);
    return {
      kind: 'assertion',
      assertion: () =>
        clientAssertion({
          clientId: account.clientId,
          tokenUrl: account.tokenUrl,
          certificatePem,
          privateKeyPem,
          now: now(),
        }),
    };
  }
  return { kind: 'none' };
}

interface ServiceAccountKey {
  client_email: string;
  private_key: string;
  private_key_id?: string;
}

/**
 * The JWT a Google service account signs to act for `subject` (domain-wide delegation). As in
 * email-oauth2-proxy, client_id `file` means client_secret is the key file's path, `key` the key's JSON.
 */
export async function serviceAccountJwt(
  account: AccountConfig,
  subject: string,
  now: number,
): Promise<string> {
  const source = account.clientSecret ?? '';
  let text: string;
  if (account.clientId === 'file') text = await readConfigured(account, 'client_secret', source);
  else if (account.clientId === 'key') text = source;
  else {
    throw new MailbridgeError(
      ErrorCode.ACCOUNT_INCOMPLETE,
      `account '${account.username}': for oauth2_flow = service_account set client_id to 'file' (client_secret is the key file) or 'key' (client_secret is the key JSON)`,
    );
  }
  let key: ServiceAccountKey;
  try {
    key = JSON.parse(text) as ServiceAccountKey;
  } catch {
    throw new MailbridgeError(
      ErrorCode.ACCOUNT_INCOMPLETE,
      `account '${account.username}': the service account key is not JSON`,
    );
  }
  if (typeof key.client_email !== 'string' || typeof key.private_key !== 'string') {
    throw new MailbridgeError(
      ErrorCode.ACCOUNT_INCOMPLETE,
      `account '${account.username}': the service account key lacks client_email or private_key`,
    );
  }
  return serviceAccountAssertion({
    clientEmail: key.client_email,
    privateKeyPem: key.private_key,
    privateKeyId: key.private_key_id,
    tokenUrl: account.tokenUrl,
    scope: account.scope,
    subject,
    now,
  });
}

async function readConfigured(account: AccountConfig, key: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error: unknown) {
    throw new MailbridgeError(
      ErrorCode.ACCOUNT_INCOMPLETE,
      `account '${account.username}': cannot read ${key} '${path}': ${(error as Error).message}`,
      { cause: error },
    );
  }
}
