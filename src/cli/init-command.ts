import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { describeError } from '../errors.ts';
import { PROVIDER_IDS, PROVIDERS, type ProviderId, type ProviderPreset } from '../oauth/providers.ts';
import { CommandExit } from './command-support.ts';

/**
 * `mailbridge init --provider …`: a commented starting configuration in email-oauth2-proxy's format. It never
 * overwrites a file: a configuration may hold the only copy of someone's tokens.
 */
export interface InitFlags {
  provider: ProviderId;
  output: string;
  account?: string;
}

const DEFAULT_ACCOUNT = 'you@example.com';

export function initCommand(): Command {
  return new Command('init')
    .description('write a commented starting configuration for a provider (never overwrites a file)')
    .addOption(
      new Option('--provider <provider>', 'the mail provider').choices(PROVIDER_IDS).makeOptionMandatory(),
    )
    .option('--output <file>', 'where to write it (- for standard output)', 'emailproxy.config')
    .option(
      '--account <address>',
      `the address to log in as (default: ${DEFAULT_ACCOUNT}, to edit)`,
      parseAddress,
    )
    .addHelpText(
      'after',
      `
Providers:
${PROVIDER_IDS.map((id) => `  ${id.padEnd(10)} ${PROVIDERS[id].name}`).join('\n')}`,
    )
    .action(async (flags: InitFlags) => {
      process.exitCode = await runInit(flags, process.stdout, process.stderr);
    });
}

function parseAddress(value: string): string {
  // The address becomes a section header: no brackets or line breaks, and an @ as every account section has.
  if (!/^[^\s[\]]*@[^\s[\]]+$/.test(value))
    throw new InvalidArgumentError('an email address such as you@example.com');
  return value;
}

export async function runInit(
  flags: InitFlags,
  stdout: NodeJS.WritableStream,
  stderr: NodeJS.WritableStream,
  now: Date = new Date(),
): Promise<number> {
  const preset = PROVIDERS[flags.provider];
  const account = flags.account ?? DEFAULT_ACCOUNT;
  const output = flags.output === '-' ? '-' : resolve(flags.output);
  const text = renderConfig(preset, account, output === '-' ? 'emailproxy.config' : output, now);
  if (output === '-') {
    stdout.write(text);
    return CommandExit.OK;
  }
  try {
    // 'wx' fails when the file exists, without a window in which another process could create it first.
    await writeFile(output, text, { flag: 'wx', mode: 0o600 });
  } catch (error: unknown) {
    const exists = (error as NodeJS.ErrnoException).code === 'EEXIST';
    stderr.write(
      `mailbridge init: ${exists ? `${output} already exists: not overwriting it; choose another --output, or move the file away first` : `cannot write ${output}: ${describeError(error)}`}\n`,
    );
    return exists ? CommandExit.CONFIG : CommandExit.FAILED;
  }
  const steps = preset.oauth
    ? [
        `edit ${output}: put your app's client ID${preset.oauth.clientSecretRequired ? ' and client secret' : ''} in [${account}] (the comments say how to get them)`,
        `mailbridge check-config --config-file ${output}`,
        `mailbridge token ${account} --external-auth --config-file ${output}   (authorise once, in a terminal)`,
        `mailbridge --config-file ${output}   (then point your mail client at the listeners)`,
      ]
    : [`read the comments in ${output}: ${preset.name} offers no public OAuth client registration`];
  stdout.write(
    `wrote ${output} for ${preset.name}\nnext:\n${steps.map((step, i) => `  ${i + 1}. ${step}`).join('\n')}\n`,
  );
  return CommandExit.OK;
}

const PROTOCOL_PORT_NAMES = { IMAP: 'IMAP', POP: 'POP3', SMTP: 'SMTP' } as const;

export function renderConfig(preset: ProviderPreset, account: string, path: string, now: Date): string {
  const lines: string[] = [
    `# mailbridge configuration for ${preset.name}.`,
    `# Written by \`mailbridge init --provider ${preset.id}\` on ${now.toISOString().slice(0, 10)}. The format is`,
    "# email-oauth2-proxy's, and that tool reads this file too (but it drops every comment when it saves tokens;",
    '# mailbridge changes only the token lines of an account section and keeps the rest).',
    '#',
  ];
  if (preset.oauth) {
    lines.push(
      '# Next steps:',
      `#   1. Register an app with ${preset.name.split(' (')[0]} (see the account section) and fill in client_id.`,
      `#   2. mailbridge check-config --config-file ${path}`,
      `#   3. mailbridge token ${account} --external-auth --config-file ${path}`,
      '#      authorises once, in a terminal: open the URL, sign in, paste the address the browser ends up on.',
      '#      The password you are asked for in MAILBRIDGE_PASSWORD (or --password-command) encrypts the tokens:',
      '#      give your mail client the same one.',
      `#   4. mailbridge --config-file ${path}   and point your mail client at the listeners below.`,
      '#',
    );
  }
  lines.push(
    ...preset.notes.map((note) => `# ${note}`),
    '#',
    '# Sources:',
    ...preset.sources.map((s) => `#   ${s}`),
    '',
  );

  const comment = preset.oauth ? (line: string) => line : (line: string) => (line === '' ? '' : `# ${line}`);
  lines.push(
    '# Listeners: each section is one local port that mailbridge proxies to the real server. [IMAP-1993] listens',
    '# on 127.0.0.1:1993 and [::1]:1993 (loopback only, unless local_address says otherwise). Your mail client',
    '# connects there without TLS, logs in with the account address and your chosen password, and mailbridge',
    '# logs in to the server with OAuth 2.0.',
  );
  for (const server of preset.servers) {
    lines.push(
      comment(`[${server.protocol}-${server.localPort}]`),
      comment(`server_address = ${server.serverAddress}`),
      comment(`server_port = ${server.serverPort}`),
    );
    if (server.serverStartTls) {
      lines.push(
        `# ${PROTOCOL_PORT_NAMES[server.protocol]} on port ${server.serverPort} starts in clear text and upgrades with STARTTLS.`,
      );
      lines.push(comment('server_starttls = True'));
    }
    lines.push('');
  }

  const oauth = preset.oauth;
  lines.push(
    '# The account: the section name is the address your mail client logs in with, exactly (case matters).',
  );
  if (oauth) {
    lines.push('# How to get a client ID:', ...oauth.registration.map((step) => `#   ${step}`));
    lines.push(
      `[${account}]`,
      `permission_url = ${oauth.permissionUrl}`,
      `token_url = ${oauth.tokenUrl}`,
      `oauth2_scope = ${oauth.scope}`,
      `redirect_uri = ${oauth.redirectUri}`,
      'client_id = *** your client ID ***',
      oauth.clientSecretRequired
        ? 'client_secret = *** your client secret ***'
        : '# client_secret = (only for an app registered as a confidential "Web" client)',
      `use_pkce = ${oauth.usePkce ? 'True' : 'False'}`,
      '',
    );
  } else {
    lines.push(
      '# Fill in what the provider gave you when it registered your client:',
      `# [${account}]`,
      '# permission_url = ',
      '# token_url = ',
      '# oauth2_scope = ',
      '# redirect_uri = http://localhost',
      '# client_id = ',
      '',
    );
  }
  return `${lines.join('\n')}`;
}
