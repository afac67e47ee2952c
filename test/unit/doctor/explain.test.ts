import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ServerConfig } from '../../../src/config/servers.ts';
import {
  explainConnectFailure,
  explainFollowUpFailure,
  explainLoginRefusal,
  explainMissingGreeting,
  explainNoOAuthMechanism,
  explainTlsFailure,
  explainTokenFailure,
  isCertificateFailure,
} from '../../../src/doctor/explain.ts';
import { withoutOpenSslNoise } from '../../../src/doctor/server-check.ts';
import { ErrorCode, MailbridgeError } from '../../../src/errors.ts';
import { explainProviderError } from '../../../src/oauth/provider-errors.ts';

function server(overrides: Partial<ServerConfig> = {}): ServerConfig {
  return {
    section: 'IMAP-1993',
    protocol: 'IMAP',
    localPort: 1993,
    localAddress: undefined,
    serverAddress: 'outlook.office365.com',
    serverPort: 993,
    serverStartTls: false,
    localStartTls: false,
    localCertificatePath: undefined,
    localKeyPath: undefined,
    ...overrides,
  } as ServerConfig;
}

/** What src/net/upstream.ts throws: a MailbridgeError whose cause is the socket error with its code. */
function upstreamError(code: string, message = code): MailbridgeError {
  const cause = Object.assign(new Error(message), { code });
  return new MailbridgeError(ErrorCode.UPSTREAM_CONNECT, `cannot reach host: ${message}`, { cause });
}

describe('doctor diagnoses', () => {
  it('turns token errors into what to do, naming where the password came from', () => {
    const wrong = new MailbridgeError(ErrorCode.TOKEN_WRONG_PASSWORD, 'incorrect');
    assert.match(
      explainTokenFailure(wrong, 'a@example.com', '--password-command') ?? '',
      /^wrong password: the password from --password-command does not decrypt the cached tokens of a@example\.com/,
    );
    const unauthorised = new MailbridgeError(ErrorCode.OAUTH_AUTHORISATION_UNAVAILABLE, 'needs authorising');
    assert.match(
      explainTokenFailure(unauthorised, 'a@example.com', 'x') ?? '',
      /mailbridge token a@example\.com --external-auth/,
    );
    const tenant = new MailbridgeError(
      ErrorCode.OAUTH_PROVIDER,
      'refused: invalid_request: AADSTS50194: not multi-tenant',
    );
    assert.match(explainTokenFailure(tenant, 'a@example.com', 'x') ?? '', /^wrong tenant/);
    // A message that already carries the remedy (the token client adds it) gets no second copy.
    const explained = new MailbridgeError(
      ErrorCode.OAUTH_PROVIDER,
      `refused: invalid_request: AADSTS50194: not multi-tenant - ${explainProviderError('', 'AADSTS50194')}`,
    );
    assert.equal(explainTokenFailure(explained, 'a@example.com', 'x'), undefined);
    const offline = new MailbridgeError(ErrorCode.OAUTH_NETWORK, 'unreachable');
    assert.match(explainTokenFailure(offline, 'a@example.com', 'x') ?? '', /cached tokens were kept/);
    assert.equal(explainTokenFailure(new Error('other'), 'a@example.com', 'x'), undefined);
  });

  it('explains connection failures from the socket error code', () => {
    assert.match(
      explainConnectFailure(upstreamError('ECONNREFUSED'), server()) ?? '',
      /server_port is probably wrong/,
    );
    assert.match(explainConnectFailure(upstreamError('ENOTFOUND'), server()) ?? '', /does not resolve/);
    const timeout = new MailbridgeError(ErrorCode.UPSTREAM_CONNECT, 'no connection within 15 s');
    assert.match(explainConnectFailure(timeout, server()) ?? '', /firewall/);
    const aggregate = new MailbridgeError(ErrorCode.UPSTREAM_CONNECT, 'refused twice', {
      cause: Object.assign(new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })]), {}),
    });
    assert.match(explainConnectFailure(aggregate, server()) ?? '', /nothing accepts connections/);
  });

  it('explains certificate problems, with the certificate the server presented', () => {
    const presented = {
      subject: 'outlook.com',
      issuer: 'Corporate Proxy CA',
      validFrom: '2026-01-01',
      validTo: '2027-01-01',
      altNames: '',
    };
    const untrusted = upstreamError('SELF_SIGNED_CERT_IN_CHAIN');
    assert.ok(isCertificateFailure(untrusted));
    assert.match(
      explainTlsFailure(untrusted, server(), presented, false) ?? '',
      /^certificate problem: .*not signed by a certificate authority .*presented "outlook\.com" issued by "Corporate Proxy CA".*antivirus or a company proxy.*NODE_EXTRA_CA_CERTS/,
    );
    assert.match(
      explainTlsFailure(upstreamError('ERR_TLS_CERT_ALTNAME_INVALID'), server(), undefined, false) ?? '',
      /does not name 'outlook\.office365\.com'/,
    );
    assert.match(
      explainTlsFailure(upstreamError('CERT_HAS_EXPIRED'), server(), undefined, false) ?? '',
      /expired, or this computer's clock is ahead/,
    );
    assert.match(
      explainTlsFailure(upstreamError('CERT_NOT_YET_VALID'), server(), undefined, false) ?? '',
      /clock is probably behind/,
    );
    assert.equal(isCertificateFailure(upstreamError('ECONNRESET')), false);
  });

  it('tells a plain-text port from a TLS port, both ways', () => {
    const clear = upstreamError('ERR_SSL_WRONG_VERSION_NUMBER', 'wrong version number');
    assert.match(
      explainTlsFailure(clear, server({ serverPort: 143 }), undefined, false) ?? '',
      /port 143 probably expects STARTTLS; set server_starttls = True/,
    );
    assert.match(
      explainMissingGreeting(server({ serverPort: 993, serverStartTls: true }), false),
      /expects TLS from the first byte; remove server_starttls/,
    );
    assert.match(explainMissingGreeting(server(), true), /another service/);
  });

  it('explains a server without OAuth, and port 25', () => {
    assert.match(explainNoOAuthMechanism(server(), ['PLAIN', 'LOGIN']), /offers only PLAIN LOGIN/);
    assert.match(
      explainNoOAuthMechanism(server({ protocol: 'SMTP', serverPort: 25 }), []),
      /offers no SASL mechanism at all.*Port 25 is for mail between servers/,
    );
  });

  it('explains refusals: SMTP AUTH disabled, Microsoft scopes and mailbox settings, a mismatched user', () => {
    const smtp = server({ protocol: 'SMTP', serverAddress: 'smtp.office365.com', serverPort: 587 });
    assert.match(
      explainLoginRefusal(
        smtp,
        'a@contoso.com',
        '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.',
        undefined,
      ),
      /SMTP AUTH disabled; the token is fine/,
    );
    assert.match(
      explainLoginRefusal(server(), 'a@contoso.com', 'NO AUTHENTICATE failed.', undefined),
      /oauth2_scope includes https:\/\/outlook\.office\.com\/IMAP\.AccessAsUser\.All.*Set-CASMailbox -ImapEnabled \$true.*signed in as a@contoso\.com/,
    );
    assert.match(
      explainLoginRefusal(server({ serverAddress: 'imap.gmail.com' }), 'a@gmail.com', 'NO', {
        status: '400',
        scope: 'https://mail.google.com/',
        raw: '',
      }),
      /expects scope 'https:\/\/mail\.google\.com\/'/,
    );
    assert.match(
      explainFollowUpFailure(
        server(),
        'a@contoso.com',
        'EXAMINE INBOX',
        'BAD User is authenticated but not connected.',
      ),
      /token belongs to another user than a@contoso\.com/,
    );
    assert.match(
      explainFollowUpFailure(
        smtp,
        'a@contoso.com',
        'MAIL FROM',
        '554 5.2.252 SendAsDenied; a@contoso.com not allowed to send as b@contoso.com',
      ),
      /refuses mail from a@contoso\.com/,
    );
  });

  it("keeps only OpenSSL's reason from its error strings", () => {
    assert.equal(
      withoutOpenSslNoise(
        'TLS failed: 808C2F193E7F0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/openssl/openssl/ssl/record/ssl3_record.c:350:  (ERR_SSL_WRONG_VERSION_NUMBER)',
      ),
      'TLS failed: wrong version number (ERR_SSL_WRONG_VERSION_NUMBER)',
    );
  });
});
