import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Who may use the console: whoever presents the secret (new at each start, or kept in web_console_secret_file),
 * once, in the sign-in URL printed at start.
 * The secret buys a session: a random id in an HttpOnly, SameSite=Strict cookie, and a CSRF token that every
 * form carries. The secret also works as `Authorization: Bearer` for scripts (`/api/status`, `/metrics`).
 *
 * Cookies are not bound to a port: a browser sends this one to any server on the same host name. So the
 * cookie is never enough to act: the CSRF token, which only a page of the console's own origin can read,
 * is checked on every POST.
 */
export interface ConsoleSession {
  readonly id: string;
  readonly csrf: string;
  /** Messages for the next page this session sees: the outcome of its last action. */
  flash: Flash[];
}

export interface Flash {
  kind: 'ok' | 'error';
  text: string;
}

/** Sign-ins kept per run; the oldest goes first (each browser that signs in makes one). */
const MAX_SESSIONS = 64;

export class ConsoleSessions {
  readonly secret: string;
  readonly cookieName: string;
  private readonly sessions = new Map<string, ConsoleSession>();

  private readonly secure: boolean;

  /** `secure`: the console speaks HTTPS, so its cookie must never travel over plain HTTP. */
  constructor(options: { port: number; secret?: string; secure?: boolean }) {
    this.secret = options.secret ?? randomBytes(32).toString('base64url');
    this.secure = options.secure ?? false;
    // One name per port, so two daemons on one host do not sign each other's browsers out.
    this.cookieName = `mailbridge_console_${options.port}`;
  }

  checkSecret(candidate: string | null | undefined): boolean {
    return typeof candidate === 'string' && sameText(candidate, this.secret);
  }

  /** `Authorization: Bearer <secret>`, for scripts and Prometheus. */
  checkBearer(header: string | undefined): boolean {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
    return match !== null && this.checkSecret(match[1]);
  }

  create(): ConsoleSession {
    const session: ConsoleSession = {
      id: randomBytes(32).toString('base64url'),
      csrf: randomBytes(32).toString('base64url'),
      flash: [],
    };
    this.sessions.set(session.id, session);
    for (const id of this.sessions.keys()) {
      if (this.sessions.size <= MAX_SESSIONS) break;
      this.sessions.delete(id);
    }
    return session;
  }

  fromCookies(header: string | undefined): ConsoleSession | undefined {
    const id = readCookie(header, this.cookieName);
    return id === undefined ? undefined : this.sessions.get(id);
  }

  setCookie(session: ConsoleSession): string {
    return `${this.cookieName}=${session.id}; Path=/; HttpOnly; SameSite=Strict${this.secure ? '; Secure' : ''}`;
  }

  checkCsrf(session: ConsoleSession, token: string | undefined): boolean {
    return typeof token === 'string' && sameText(token, session.csrf);
  }
}

/** Compares in constant time, whatever the lengths (hashing first evens them out). */
function sameText(a: string, b: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(a), digest(b)) && a === b;
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const equals = part.indexOf('=');
    if (equals === -1) continue;
    if (part.slice(0, equals).trim() === name) return part.slice(equals + 1).trim();
  }
  return undefined;
}
