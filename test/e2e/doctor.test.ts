import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DoctorReport, ServerReport } from '../../src/doctor/report.ts';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { serverSection } from '../testbed/config-sections.ts';
import { runMailbridge } from '../testbed/mailbridge-command.ts';
import { findFreePorts } from '../testbed/ports.ts';
import { type ScriptedServer, startScriptedServer } from '../testbed/scripted-server.ts';

/**
 * `mailbridge doctor` and `check-config` against the test bed: every server section of a good configuration
 * works end to end, and each deliberately broken setting gets the diagnosis a person can act on. Where no
 * real peer here behaves like the provider (Microsoft taking a login it should refuse, SMTP AUTH disabled for
 * the tenant, a server without OAuth), a scripted server over TLS plays it.
 */
const ALICE = 'alice@example.test';
const PASSWORD = 'correct horse';

let bed: Testbed;
let goodConfig: string;
let brokenConfig: string;
const scripted: ScriptedServer[] = [];

function doctor(
  config: string,
  extra: string[] = [],
  env: Record<string, string> = { MAILBRIDGE_PASSWORD: PASSWORD },
) {
  return runMailbridge(['doctor', '--config-file', config, ...extra], {
    env,
    caCertPath: bed.certs.caCertPath,
  });
}

function server(report: DoctorReport, section: string): ServerReport {
  const found = report.servers.find((candidate) => candidate.section === section);
  assert.ok(found, `no report for [${section}]`);
  return found;
}

/** The last check run for a server: where it stopped. */
function lastCheck(report: DoctorReport, section: string) {
  const { checks } = server(report, section);
  return checks[checks.length - 1] as (typeof checks)[number];
}

type Send = (text: string) => void;

/**
 * An IMAP server as scripted: CAPABILITY and LOGOUT as any server; `answer` handles AUTHENTICATE and the rest.
 * With `challenge`, AUTHENTICATE gets that error challenge and the client's reply to it a tagged NO.
 */
function imapScript(
  capabilities: string,
  answer: (tag: string, verb: string, send: Send) => void,
  challenge?: string,
) {
  let pendingAuthentication: string | undefined;
  return (line: string, send: Send) => {
    if (pendingAuthentication !== undefined) {
      // The client's answer to our error challenge.
      send(`${pendingAuthentication} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)`);
      pendingAuthentication = undefined;
      return;
    }
    const [tag = '*', verb = ''] = line.split(' ');
    switch (verb.toUpperCase()) {
      case 'CAPABILITY':
        send(`* CAPABILITY ${capabilities}`);
        send(`${tag} OK CAPABILITY completed.`);
        return;
      case 'LOGOUT':
        send('* BYE logging out');
        send(`${tag} OK LOGOUT completed.`);
        return;
      case 'AUTHENTICATE':
        if (challenge === undefined) answer(tag, 'AUTHENTICATE', send);
        else {
          pendingAuthentication = tag;
          send(`+ ${challenge}`);
        }
        return;
      default:
        answer(tag, verb.toUpperCase(), send);
    }
  };
}

describe('mailbridge doctor and check-config against the test bed', () => {
  before(async () => {
    bed = await startTestbed({ smtpSink: true });
    bed.dovecot.seedMessage(ALICE, '1.hello', 'Subject: hello\r\n\r\nHello\r\n');
    const { ports } = bed.dovecot;
    const account = bed.accountSection(ALICE);
    goodConfig = join(bed.dir, 'good.config');
    await writeFile(
      goodConfig,
      [
        serverSection({ protocol: 'IMAP', localPort: 2001, serverPort: ports.imaps }),
        serverSection({
          protocol: 'IMAP',
          localPort: 2002,
          serverAddress: 'localhost',
          serverPort: ports.imap,
          serverStarttls: true,
        }),
        serverSection({ protocol: 'POP', localPort: 2003, serverPort: ports.pop3s }),
        serverSection({
          protocol: 'POP',
          localPort: 2004,
          serverAddress: 'localhost',
          serverPort: ports.pop3,
          serverStarttls: true,
        }),
        serverSection({
          protocol: 'SMTP',
          localPort: 2005,
          serverAddress: 'localhost',
          serverPort: ports.submission,
          serverStarttls: true,
        }),
        serverSection({
          protocol: 'SMTP',
          localPort: 2006,
          serverAddress: 'localhost',
          serverPort: ports.submissions,
        }),
        account,
      ].join('\n'),
    );
    const authorised = await runMailbridge(['token', ALICE, '--external-auth', '--config-file', goodConfig], {
      env: { MAILBRIDGE_PASSWORD: PASSWORD },
      authorise: (url) => bed.oauth.authorize(url),
    });
    assert.equal(authorised.code, 0, authorised.stderr);

    const noOAuth = await startScriptedServer({
      certs: bed.certs,
      greeting: '* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] a server that takes passwords only',
      respond: imapScript('IMAP4rev1 AUTH=PLAIN AUTH=LOGIN', () => undefined),
    });
    const mismatched = await startScriptedServer({
      certs: bed.certs,
      greeting: '* OK The Microsoft Exchange IMAP4 service is ready.',
      respond: imapScript(
        'IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS ID IDLE',
        (tag, verb, send) => {
          if (verb === 'AUTHENTICATE') send(`${tag} OK AUTHENTICATE completed.`);
          else send(`${tag} BAD User is authenticated but not connected.`);
        },
      ),
    });
    const challenge = Buffer.from(
      JSON.stringify({ status: '401', schemes: 'bearer', scope: 'https://mail.google.com/' }),
    ).toString('base64');
    const refusing = await startScriptedServer({
      certs: bed.certs,
      greeting: '* OK Gimap ready',
      respond: imapScript('IMAP4rev1 AUTH=XOAUTH2 AUTH=OAUTHBEARER SASL-IR', () => undefined, challenge),
    });
    let awaitingResponse = false;
    const smtpDisabled = await startScriptedServer({
      certs: bed.certs,
      greeting: '220 fake.outlook.test Microsoft ESMTP MAIL Service ready',
      respond: (line, send) => {
        if (awaitingResponse) {
          awaitingResponse = false;
          send(
            '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.',
          );
        } else if (/^EHLO /i.test(line)) {
          send('250-fake.outlook.test Hello\r\n250-SIZE 157286400\r\n250-AUTH LOGIN XOAUTH2\r\n250 8BITMIME');
        } else if (/^AUTH XOAUTH2$/i.test(line)) {
          awaitingResponse = true;
          send('334 ');
        } else if (/^QUIT/i.test(line)) send('221 2.0.0 Service closing transmission channel');
        else send('500 5.3.3 Unrecognized command');
      },
    });
    scripted.push(noOAuth, mismatched, refusing, smtpDisabled);
    const [closedPort] = (await findFreePorts(1)) as [number];
    const goodText = await readFile(goodConfig, 'utf8');
    brokenConfig = join(bed.dir, 'broken.config');
    await writeFile(
      brokenConfig,
      [
        serverSection({ protocol: 'IMAP', localPort: 2101, serverPort: closedPort }),
        serverSection({ protocol: 'IMAP', localPort: 2102, serverPort: ports.imap }),
        serverSection({ protocol: 'POP', localPort: 2103, serverPort: ports.pop3s, serverStarttls: true }),
        serverSection({ protocol: 'IMAP', localPort: 2104, serverPort: noOAuth.port }),
        serverSection({ protocol: 'IMAP', localPort: 2105, serverPort: mismatched.port }),
        serverSection({ protocol: 'IMAP', localPort: 2106, serverPort: refusing.port }),
        serverSection({ protocol: 'SMTP', localPort: 2107, serverPort: smtpDisabled.port }),
        serverSection({
          protocol: 'IMAP',
          localPort: 2108,
          serverAddress: 'localhost',
          serverPort: ports.submissions,
        }),
        // The same cached tokens: doctor logs in with a working token everywhere.
        goodText.slice(goodText.indexOf(`[${ALICE}]`)),
      ].join('\n'),
    );
  });

  after(async () => {
    for (const server of scripted) await server.close();
    await bed?.stop();
  });

  it('finds every server of a good configuration working end to end: TLS, STARTTLS, login, a command after login', async () => {
    const result = await doctor(goodConfig);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /^everything works/m);
    const json = await doctor(goodConfig, ['--json']);
    const report = JSON.parse(json.stdout) as DoctorReport;
    assert.equal(report.account, ALICE);
    assert.equal(report.problems, 0);
    assert.deepEqual(
      report.accountChecks.map((check) => [check.step, check.status]),
      [
        ['account', 'ok'],
        ['clock', 'ok'],
        ['cache', 'ok'],
        ['token', 'ok'],
      ],
    );
    for (const section of ['IMAP-2001', 'IMAP-2002', 'POP-2003', 'POP-2004', 'SMTP-2005', 'SMTP-2006']) {
      const steps = server(report, section).checks.map((check) => check.step);
      assert.deepEqual(
        steps,
        [
          'resolve',
          'connect',
          ...(section.endsWith('2') || section.endsWith('4') || section.endsWith('5')
            ? ['greeting', 'tls']
            : ['tls', 'greeting']),
          'capabilities',
          'login',
          'follow-up',
        ],
        section,
      );
      assert.ok(
        server(report, section).checks.every((check) => check.status === 'ok' || check.step === 'tls'),
        JSON.stringify(server(report, section)),
      );
    }
    assert.match(lastCheck(report, 'IMAP-2001').summary, /^EXAMINE INBOX: INBOX has 1 message$/);
    assert.match(lastCheck(report, 'POP-2003').summary, /^STAT: the maildrop has 1 message$/);
    assert.match(lastCheck(report, 'SMTP-2005').summary, /^MAIL FROM:<alice@example\.test> \+ RSET/);
    assert.match(
      server(report, 'IMAP-2002').checks.find((c) => c.step === 'login')?.summary ?? '',
      /with XOAUTH2/,
    );
  });

  it('explains each deliberately broken server setting in plain words', async () => {
    const result = await doctor(brokenConfig, ['--json', '--timeout', '2']);
    assert.equal(result.code, 1, result.stderr);
    const report = JSON.parse(result.stdout) as DoctorReport;
    const expectations: [string, string, RegExp][] = [
      [
        'IMAP-2101',
        'connect',
        /nothing accepts connections on 127\.0\.0\.1:\d+: server_port is probably wrong/,
      ],
      [
        'IMAP-2102',
        'tls',
        /answered in clear text, not TLS: port \d+ probably expects STARTTLS; set server_starttls = True/,
      ],
      [
        'POP-2103',
        'greeting',
        /sent nothing in clear text: port \d+ probably expects TLS from the first byte; remove server_starttls/,
      ],
      [
        'IMAP-2104',
        'capabilities',
        /does not offer XOAUTH2 or OAUTHBEARER \(it offers only PLAIN LOGIN\): mailbridge can only log in with OAuth 2\.0/,
      ],
      [
        'IMAP-2105',
        'follow-up',
        /accepted the login but will not open the mailbox \('BAD User is authenticated but not connected\.'\): the token belongs to another user than alice@example\.test/,
      ],
      [
        'IMAP-2106',
        'login',
        /refused the token for alice@example\.test.*The server expects scope 'https:\/\/mail\.google\.com\/'/,
      ],
      ['SMTP-2107', 'login', /has SMTP AUTH disabled; the token is fine/],
      ['IMAP-2108', 'greeting', /greeting is not IMAP \('220 localhost Dovecot.*belongs to another service/],
    ];
    for (const [section, step, advice] of expectations) {
      const check = lastCheck(report, section);
      assert.deepEqual(
        [check.step, check.status],
        [step, 'fail'],
        `${section}: ${JSON.stringify(server(report, section))}`,
      );
      assert.match(check.advice ?? '', advice, section);
    }
    // After the refused XOAUTH2 exchange, the client answered the error challenge with an empty line.
    assert.ok(scripted[2]?.received.includes(''));
    assert.equal(report.problems, expectations.length);

    const text = await doctor(brokenConfig, ['--timeout', '2']);
    assert.match(text.stdout, /^ {2}FAIL {2}connect {7}cannot reach 127\.0\.0\.1:\d+: connection refused/m);
    assert.match(text.stdout, /^ {8}-> nothing accepts connections/m);
    assert.match(text.stdout, /^8 problems found: see the advice under each FAIL$/m);
  });

  it('diagnoses a wrong password and skips the logins, keeping the cached tokens', async () => {
    const result = await doctor(goodConfig, ['--json'], { MAILBRIDGE_PASSWORD: 'wrong password' });
    assert.equal(result.code, 1);
    const report = JSON.parse(result.stdout) as DoctorReport;
    const tokenCheck = report.accountChecks.find((check) => check.step === 'token');
    assert.equal(tokenCheck?.status, 'fail');
    assert.match(
      tokenCheck?.advice ?? '',
      /^wrong password: the password from MAILBRIDGE_PASSWORD does not decrypt the cached tokens of alice@example\.test/,
    );
    assert.deepEqual(
      [lastCheck(report, 'IMAP-2001').step, lastCheck(report, 'IMAP-2001').status],
      ['login', 'skip'],
    );
    assert.equal(report.problems, 1);
  });

  it('explains an untrusted certificate, naming who issued the one presented', async () => {
    const result = await runMailbridge(['doctor', '--json', '--config-file', goodConfig], {
      env: { MAILBRIDGE_PASSWORD: PASSWORD },
    });
    const report = JSON.parse(result.stdout) as DoctorReport;
    for (const section of ['IMAP-2001', 'IMAP-2002']) {
      const check = lastCheck(report, section);
      assert.deepEqual([check.step, check.status], ['tls', 'fail'], section);
      assert.match(
        check.advice ?? '',
        /certificate problem: the server's certificate is not signed by a certificate authority this computer trusts \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)\. The server presented "localhost" issued by "mailbridge test CA".*NODE_EXTRA_CA_CERTS/,
      );
    }
  });

  it('without a password checks up to the capabilities and says how to check the rest', async () => {
    const result = await doctor(goodConfig, [], {});
    assert.equal(result.code, 0, result.stdout);
    assert.match(result.stdout, /skip {2}token +no password: set MAILBRIDGE_PASSWORD or --password-command/);
    assert.match(result.stdout, /^everything checked works, with .*checks skipped above$/m);
  });

  it('check-config lists what will listen where and the accounts, and exits 2 naming the file and line', async () => {
    const good = await runMailbridge(['check-config', '--config-file', goodConfig]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(
      good.stdout,
      /^ {2}IMAP {2}127\.0\.0\.1:2001, \[::1\]:2001 \(plain\) -> 127\.0\.0\.1:\d+ \(TLS\) {2}\[IMAP-2001\]$/m,
    );
    assert.match(
      good.stdout,
      /^ {2}SMTP {2}127\.0\.0\.1:2005, \[::1\]:2005 \(plain\) -> localhost:\d+ \(STARTTLS\) {2}\[SMTP-2005\]$/m,
    );
    assert.match(good.stdout, /^ {2}alice@example\.test: authorization_code via 127\.0\.0\.1:\d+$/m);
    assert.match(good.stdout, /^OK$/m);
    assert.doesNotMatch(good.stdout, /gAAAAA|test-secret/);

    const syntax = join(bed.dir, 'syntax.config');
    await writeFile(syntax, '[IMAP-1993]\nserver_address = a\nserver_port = 993\nserver_port = 994\n');
    const broken = await runMailbridge(['check-config', '--config-file', syntax]);
    assert.equal(broken.code, 2);
    assert.match(
      broken.stderr,
      /syntax\.config line 4: option 'server_port' already appears in section '\[IMAP-1993\]' \(line 3\)/,
    );

    const unusable = join(bed.dir, 'unusable.config');
    await writeFile(
      unusable,
      [
        serverSection({
          protocol: 'IMAP',
          localPort: 1993,
          serverAddress: 'imap.example.test',
          serverPort: 143,
        }),
        serverSection({
          protocol: 'POP',
          localPort: 1993,
          serverAddress: 'pop.example.test',
          serverPort: 995,
        }),
        '[someone@example.test]\ntoken_url = https://login.example.test/token\n',
      ].join('\n'),
    );
    const review = await runMailbridge(['check-config', '--config-file', unusable]);
    assert.equal(review.code, 2);
    assert.match(
      review.stdout,
      /\[IMAP-1993\] server_port 143 normally starts in clear text and upgrades with STARTTLS.*set server_starttls = True/,
    );
    assert.match(
      review.stdout,
      /\[POP-1993\] \[POP-1993\] and \[IMAP-1993\] both listen on 127\.0\.0\.1:1993/,
    );
    assert.match(review.stdout, /\[someone@example\.test\] account 'someone@example\.test' is incomplete/);
  });
});
