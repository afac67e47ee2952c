import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, realpathSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Authorisations, FrontEnd } from './pending.ts';

/**
 * The running daemon's local control socket, through which `mailbridge authorise` lists pending requests and
 * completes one with a redirect URL, while the daemon goes on serving. It is a Unix socket in a directory only
 * the owner may enter, and is itself owner-only: whoever can use it could hand the daemon a redirect URL.
 *
 * One JSON object per line each way: {"op":"list"} → {"ok":true,"pending":[…]};
 * {"op":"complete","account":…,"redirect":…} → {"ok":true}; {"op":"token","account":…} → {"ok":true,"token":…}
 * for an account a client has unlocked since the daemon started; any failure → {"ok":false,"error":…}.
 */
export interface PendingSummary {
  account: string;
  kind: 'code' | 'device';
  url: string;
  userCode?: string;
  redirectUri?: string;
  waitingSince: string;
}

export type ControlRequest =
  | { op: 'list' }
  | { op: 'complete'; account: string; redirect: string }
  | { op: 'token'; account: string };
export type ControlReply =
  | { ok: true; pending?: PendingSummary[]; token?: string }
  | { ok: false; error: string };

/** What the daemon lends the socket beyond its pending authorisations. */
export interface ControlHooks {
  /** A fresh access token for an unlocked account; undefined when it is not unlocked in this daemon. */
  token?: (account: string) => Promise<string | undefined>;
}

/** Where the daemon for `configPath` listens: one socket per configuration file. */
export function controlSocketPath(configPath: string): string {
  let canonical = resolve(configPath);
  try {
    canonical = realpathSync(canonical);
  } catch {
    // A missing file still names a socket; the connection attempt will say nobody listens.
  }
  const directory = process.env.XDG_RUNTIME_DIR
    ? join(process.env.XDG_RUNTIME_DIR, 'mailbridge')
    : join(tmpdir(), `mailbridge-${process.getuid?.() ?? 'user'}`);
  const name = createHash('sha256').update(canonical).digest('hex').slice(0, 16);
  return join(directory, `${name}.sock`);
}

/** A front end in name: requests are answered through it, so code requests can be completed while it listens. */
export class ControlSocket implements FrontEnd {
  private server: net.Server | undefined;

  constructor(
    private readonly authorisations: () => Authorisations,
    private readonly path: string,
    private readonly logger: Logger,
    private readonly hooks: ControlHooks = {},
  ) {}

  get completesCodeRequests(): boolean {
    return this.server?.listening ?? false;
  }

  offer(): void {}
  withdraw(): void {}

  async listen(): Promise<void> {
    const directory = resolve(this.path, '..');
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    chmodSync(directory, 0o700);
    await removeStaleSocket(this.path);
    const server = net.createServer((socket) => this.serve(socket));
    await new Promise<void>((resolveListen, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => {
        server.off('error', reject);
        resolveListen();
      });
    });
    chmodSync(this.path, 0o600);
    this.server = server;
    this.logger.info(
      `control socket at ${this.path}: 'mailbridge authorise ACCOUNT' answers pending requests`,
    );
  }

  close(): void {
    this.server?.close();
    this.server = undefined;
    try {
      unlinkSync(this.path);
    } catch {
      // Already gone.
    }
  }

  private serve(socket: net.Socket): void {
    socket.setEncoding('utf8');
    let buffer = '';
    // Answers go out in the order of the requests, one at a time.
    let answering: Promise<void> = Promise.resolve();
    socket.on('error', () => undefined);
    socket.on('data', (text: string) => {
      buffer += text;
      if (buffer.length > 64 * 1024) {
        socket.destroy();
        return;
      }
      let end = buffer.indexOf('\n');
      while (end !== -1) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        answering = answering
          .then(() => this.answer(line))
          .then((reply) => {
            if (!socket.destroyed) socket.write(`${JSON.stringify(reply)}\n`);
          });
        end = buffer.indexOf('\n');
      }
    });
  }

  private async answer(line: string): Promise<ControlReply> {
    let request: ControlRequest;
    try {
      request = JSON.parse(line) as ControlRequest;
    } catch {
      return { ok: false, error: 'not a JSON request' };
    }
    const pending = this.authorisations().pending();
    if (request.op === 'list') {
      return {
        ok: true,
        pending: pending.map((item) => ({
          account: item.account.username,
          kind: item.details.kind,
          url: item.url,
          userCode: item.details.kind === 'device' ? item.details.userCode : undefined,
          redirectUri: item.account.redirectUri,
          waitingSince: new Date(item.createdAt).toISOString(),
        })),
      };
    }
    if (
      request.op === 'complete' &&
      typeof request.account === 'string' &&
      typeof request.redirect === 'string'
    ) {
      const target = pending.find((item) => item.account.username === request.account);
      if (!target) return { ok: false, error: `no authorisation is pending for '${request.account}'` };
      try {
        target.complete(request.redirect);
        this.logger.info(
          { account: request.account },
          `authorisation of '${request.account}' answered through the control socket`,
        );
        return { ok: true };
      } catch (error: unknown) {
        return { ok: false, error: describeError(error) };
      }
    }
    if (request.op === 'token' && typeof request.account === 'string' && this.hooks.token) {
      try {
        const token = await this.hooks.token(request.account);
        return token
          ? { ok: true, token }
          : { ok: false, error: `no client has logged in to '${request.account}' since the daemon started` };
      } catch (error: unknown) {
        return { ok: false, error: describeError(error) };
      }
    }
    return { ok: false, error: 'unknown request' };
  }
}

async function removeStaleSocket(path: string): Promise<void> {
  const live = await new Promise<boolean>((resolveProbe) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolveProbe(true);
    });
    probe.once('error', () => resolveProbe(false));
  });
  if (live) throw new Error(`another mailbridge already serves this configuration (control socket ${path})`);
  try {
    unlinkSync(path);
  } catch {
    // Nothing stale to remove.
  }
}

/** One request to the daemon's control socket; rejects when no daemon listens. */
export function askDaemon(path: string, request: ControlRequest, timeoutMs = 10_000): Promise<ControlReply> {
  return new Promise((resolveReply, reject) => {
    const socket = net.connect(path);
    let buffer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the daemon did not answer on ${path} within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (text: string) => {
      buffer += text;
      const end = buffer.indexOf('\n');
      if (end === -1) return;
      clearTimeout(timer);
      socket.end();
      try {
        resolveReply(JSON.parse(buffer.slice(0, end)) as ControlReply);
      } catch {
        reject(new Error('the daemon sent an unreadable answer'));
      }
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        error.code === 'ENOENT' || error.code === 'ECONNREFUSED'
          ? new Error(`no mailbridge is running with this configuration (no control socket at ${path})`)
          : error,
      );
    });
  });
}
