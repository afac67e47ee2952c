import { createInterface } from 'node:readline/promises';
import { Command } from 'commander';
import { askDaemon, controlSocketPath, type PendingSummary } from '../authorise/control-socket.ts';
import { describeError } from '../errors.ts';

/**
 * `mailbridge authorise [ACCOUNT]`: answers the running daemon's pending authorisation of an account from any
 * terminal (over SSH, say), without stopping the daemon. Without an account it lists what is pending.
 */
export function authoriseCommand(): Command {
  return new Command('authorise')
    .alias('authorize')
    .description("answer the running daemon's pending authorisation of ACCOUNT (or list them all)")
    .argument('[account]', 'the account (email address) to authorise')
    .option('--config-file <path>', "the daemon's configuration file", 'emailproxy.config')
    .action(async (account: string | undefined, options: { configFile: string }) => {
      process.exitCode = await authorise(account, options.configFile);
    });
}

async function authorise(account: string | undefined, configFile: string): Promise<number> {
  const socket = controlSocketPath(configFile);
  try {
    const listing = await askDaemon(socket, { op: 'list' });
    if (!listing.ok) throw new Error(listing.error);
    const pending = listing.pending ?? [];
    if (!account) {
      if (pending.length === 0) process.stdout.write('no authorisation is pending\n');
      for (const item of pending) process.stdout.write(`${describe(item)}\n`);
      return 0;
    }
    const request = pending.find((item) => item.account === account);
    if (!request) {
      process.stderr.write(
        `mailbridge: no authorisation is pending for '${account}'; log in with your mail client first - mailbridge asks when it needs to\n`,
      );
      return 1;
    }
    if (request.kind === 'device') {
      process.stdout.write(`${describe(request)}\nmailbridge finishes by itself once the code is entered.\n`);
      return 0;
    }
    return await paste(socket, request);
  } catch (error: unknown) {
    process.stderr.write(`mailbridge: ${describeError(error)}\n`);
    return 1;
  }
}

async function paste(socket: string, request: PendingSummary): Promise<number> {
  const lines = createInterface({
    input: process.stdin,
    output: process.stderr,
    terminal: process.stdin.isTTY,
  });
  try {
    process.stdout.write(`Open this URL in a browser and sign in as ${request.account}:\n${request.url}\n`);
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const redirect = (
        await lines.question(
          `Paste the address the browser ends up on (it starts with ${request.redirectUri ?? 'the redirect_uri'}):\n`,
        )
      ).trim();
      if (!redirect) continue;
      const reply = await askDaemon(socket, { op: 'complete', account: request.account, redirect });
      if (reply.ok) {
        process.stdout.write(`${request.account} is authorised; its waiting clients continue.\n`);
        return 0;
      }
      process.stderr.write(`mailbridge: ${reply.error}\n`);
    }
    return 1;
  } finally {
    lines.close();
  }
}

function describe(item: PendingSummary): string {
  return item.kind === 'device'
    ? `${item.account}: visit ${item.url} and enter the code ${item.userCode ?? ''} (waiting since ${item.waitingSince})`
    : `${item.account}: open ${item.url} (waiting since ${item.waitingSince})`;
}
