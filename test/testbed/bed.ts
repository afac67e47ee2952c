import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestCertificates, type TestCertificates } from './certs.ts';
import { type DovecotInstance, type DovecotMechanism, startDovecot } from './dovecot.ts';
import { type OAuthTestServer, startOAuthServer } from './oauth-server.ts';

/**
 * The whole upstream world of a test file: a throwaway CA, the OAuth server, and Dovecot accepting only
 * bearer tokens that it checks with that OAuth server.
 */
export interface Testbed {
  dir: string;
  certs: TestCertificates;
  oauth: OAuthTestServer;
  dovecot: DovecotInstance;
  /** An account section for the config file, pointing at the test OAuth server. */
  accountSection(username: string, extra?: Record<string, string>): string;
  stop(): Promise<void>;
}

export const REDIRECT_URI = 'http://localhost:28081';

export async function startTestbed(options: { mechanisms?: DovecotMechanism[] } = {}): Promise<Testbed> {
  const dir = await mkdtemp(join(tmpdir(), 'mailbridge-test-'));
  const certs = await createTestCertificates(join(dir, 'certs'));
  const oauth = await startOAuthServer();
  let dovecot: DovecotInstance;
  try {
    dovecot = await startDovecot({
      introspectionUrl: oauth.introspectionEndpoint,
      certs,
      mechanisms: options.mechanisms,
    });
  } catch (error: unknown) {
    await oauth.close();
    throw error;
  }
  return {
    dir,
    certs,
    oauth,
    dovecot,
    accountSection(username, extra = {}) {
      const values: Record<string, string> = {
        permission_url: oauth.authorizationEndpoint,
        token_url: oauth.tokenEndpoint,
        oauth2_scope: 'imap offline_access',
        redirect_uri: REDIRECT_URI,
        client_id: 'test-client',
        client_secret: 'test-secret',
        ...extra,
      };
      const lines = Object.entries(values).map(([key, value]) => `${key} = ${value}`);
      return `[${username}]\n${lines.join('\n')}\n`;
    },
    async stop() {
      await dovecot.stop();
      await oauth.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
