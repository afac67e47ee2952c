import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestCertificates, type TestCertificates } from './certs.ts';
import { type DovecotInstance, type DovecotMechanism, startDovecot } from './dovecot.ts';
import { type OAuthTestServer, startOAuthServer } from './oauth-server.ts';
import { type SmtpSink, startSmtpSink } from './smtp-sink.ts';

/**
 * The whole upstream world of a test file: a throwaway CA, the OAuth server, and Dovecot accepting only
 * bearer tokens that it checks with that OAuth server.
 */
export interface Testbed {
  dir: string;
  certs: TestCertificates;
  oauth: OAuthTestServer;
  dovecot: DovecotInstance;
  /**
   * The SMTP sink Dovecot's submission service relays to, when started with `smtpSink: true`. Its messages
   * are what Dovecot relayed, byte for byte; the files live under `<dir>/sink`.
   */
  sink?: SmtpSink;
  /** An account section for the config file, pointing at the test OAuth server. */
  accountSection(username: string, extra?: Record<string, string>): string;
  stop(): Promise<void>;
}

export const REDIRECT_URI = 'http://localhost:28081';

export interface TestbedOptions {
  mechanisms?: DovecotMechanism[];
  /** Start an SMTP sink of our own and make it Dovecot's submission relay (`bed.sink`). */
  smtpSink?: boolean;
}

export async function startTestbed(
  options: TestbedOptions & { smtpSink: true },
): Promise<Testbed & { sink: SmtpSink }>;
export async function startTestbed(options?: TestbedOptions): Promise<Testbed>;
export async function startTestbed(options: TestbedOptions = {}): Promise<Testbed> {
  const dir = await mkdtemp(join(tmpdir(), 'mailbridge-test-'));
  const certs = await createTestCertificates(join(dir, 'certs'));
  const oauth = await startOAuthServer();
  let sink: SmtpSink | undefined;
  let dovecot: DovecotInstance;
  try {
    if (options.smtpSink) sink = await startSmtpSink({ dir: join(dir, 'sink') });
    dovecot = await startDovecot({
      introspectionUrl: oauth.introspectionEndpoint,
      certs,
      mechanisms: options.mechanisms,
      ...(sink ? { relay: { host: sink.host, port: sink.port } } : {}),
    });
  } catch (error: unknown) {
    await sink?.close();
    await oauth.close();
    throw error;
  }
  return {
    dir,
    certs,
    oauth,
    dovecot,
    ...(sink ? { sink } : {}),
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
      await sink?.close();
      await oauth.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
