import { describeError } from '../errors.ts';
import { Limits } from '../net/limits.ts';
import { type Line, LineBuffer, LineTooLongError } from '../net/line-buffer.ts';
import { ProxySession } from './proxy-session.ts';

/**
 * A session whose client speaks in lines, one command at a time (POP3, SMTP): each line is handled to the
 * end — a reply from the server awaited, a login finished — before the next is read, so replies keep the
 * order of the commands even when the client pipelines them.
 *
 * A client may pipeline more than the server answers in the meantime, but not without limit: once more than a
 * full line's worth waits unhandled, reading stops and TCP flow control holds the rest in the client's lap
 * until the backlog is answered. Without this, a flood of CAPA or NOOP before login took 64 MiB in 3 s.
 */
export abstract class LineSession extends ProxySession {
  protected readonly lines = new LineBuffer(Limits.preAuthLineBytes);
  private processing = false;
  private throttled = false;

  protected abstract onLine(line: Line): Promise<void>;
  /** The reply to a line over the limit, after which the connection closes. */
  protected abstract lineTooLongReply(limit: number): string;

  protected receive(chunk: Buffer): void {
    this.lines.push(chunk);
    // The threshold is the line limit itself: a partial line below it must always be able to complete.
    if (!this.throttled && this.lines.length > Limits.preAuthLineBytes) {
      this.throttled = true;
      this.client.pause();
    }
    void this.process();
  }

  protected unhandledClientBytes(): Buffer {
    return this.lines.drain();
  }

  /** Handles buffered lines while the session is still before login; safe to call at any time. */
  protected async process(): Promise<void> {
    if (this.processing) return;
    this.processing = true;
    try {
      while (this.state === 'not-authenticated') {
        let line: Line | undefined;
        try {
          line = this.lines.nextLine();
        } catch (error: unknown) {
          if (!(error instanceof LineTooLongError)) throw error;
          this.send(this.lineTooLongReply(error.limit));
          this.close('client sent an overlong line');
          return;
        }
        if (!line) return;
        await this.onLine(line);
        this.readOnIfAnswered();
      }
    } catch (error: unknown) {
      this.close(`session failed: ${describeError(error)}`);
    } finally {
      this.processing = false;
    }
  }

  private readOnIfAnswered(): void {
    if (!this.throttled || this.lines.length > Limits.preAuthLineBytes) return;
    this.throttled = false;
    if (this.state === 'not-authenticated') this.client.resume();
  }
}
