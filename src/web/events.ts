import type { ServerResponse } from 'node:http';
import { SECURITY_HEADERS } from './http.ts';
import type { ConsoleSession } from './sessions.ts';

/**
 * Server-Sent Events to every open console page. An update is sent when something changes in this process
 * (a request offered or withdrawn, an action) and, while a page is open, when a periodic look at the token
 * file finds a change made elsewhere (a refresh by a login, another process): each page gets an `update`
 * event only when its rendered content differs from what it last got.
 */
interface Client {
  res: ServerResponse;
  session: ConsoleSession;
  last: string | undefined;
}

export interface LiveUpdatesOptions {
  /** The `update` event's data (one line of JSON) for one page; a throw skips this update. */
  render: (session: ConsoleSession) => string;
  /** How often token state is looked at while a page is open. */
  pollMs: number;
  /** A comment line now and then keeps proxies and tunnels from closing an idle stream. */
  keepAliveMs: number;
}

export class LiveUpdates {
  private readonly clients = new Set<Client>();
  private poll: NodeJS.Timeout | undefined;
  private keepAlive: NodeJS.Timeout | undefined;
  private scheduled = false;

  constructor(private readonly options: LiveUpdatesOptions) {}

  get size(): number {
    return this.clients.size;
  }

  open(res: ServerResponse, session: ConsoleSession): void {
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'Content-Type': 'text/event-stream; charset=utf-8',
      Connection: 'keep-alive',
    });
    // A reconnecting page waits a little, not the default 3 s, after a daemon restart or a network blip.
    res.write('retry: 1000\n\n');
    const client: Client = { res, session, last: undefined };
    this.clients.add(client);
    res.on('close', () => {
      this.clients.delete(client);
      if (this.clients.size === 0) this.stopTimers();
    });
    this.send(client);
    this.startTimers();
  }

  /** Something changed: every page is brought up to date once the current work is done. */
  changed(): void {
    if (this.scheduled || this.clients.size === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      for (const client of this.clients) this.send(client);
    });
  }

  close(): void {
    this.stopTimers();
    for (const client of this.clients) client.res.end();
    this.clients.clear();
  }

  private send(client: Client): void {
    let data: string;
    try {
      data = this.options.render(client.session);
    } catch {
      // A configuration mid-edit can fail to read: the page keeps what it shows until the next change.
      return;
    }
    if (data === client.last) return;
    client.last = data;
    client.res.write(`event: update\ndata: ${data}\n\n`);
  }

  private startTimers(): void {
    if (this.poll) return;
    this.poll = setInterval(() => this.changed(), this.options.pollMs);
    this.poll.unref();
    this.keepAlive = setInterval(() => {
      for (const client of this.clients) client.res.write(': keep-alive\n\n');
    }, this.options.keepAliveMs);
    this.keepAlive.unref();
  }

  private stopTimers(): void {
    clearInterval(this.poll);
    clearInterval(this.keepAlive);
    this.poll = undefined;
    this.keepAlive = undefined;
  }
}
