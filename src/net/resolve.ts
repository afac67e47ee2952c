import dns, { type LookupAddress } from 'node:dns';
import { stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { Logger } from '../log.ts';
import { Limits } from './limits.ts';

/**
 * Name resolution that survives nameserver changes for the life of the daemon.
 *
 * The system resolver (`dns.lookup`, glibc getaddrinfo) honours /etc/hosts and nsswitch, so it goes first.
 * But glibc before 2.36-9+deb12u9 can stop re-reading /etc/resolv.conf in a thread for good after a VPN drop,
 * and each libuv pool thread has its own resolver state. When it fails we ask c-ares directly, with a
 * Resolver created afresh whenever /etc/resolv.conf changes: a long-lived Resolver never re-reads it.
 */
export interface ResolverOptions {
  logger: Logger;
  resolvConfPath?: string;
  /** Milliseconds; injected so tests of the warning's rate need no sleeps. */
  now?: () => number;
}

interface ResolvConfIdentity {
  key: string;
}

export class HostResolver {
  private fallback: dns.promises.Resolver | undefined;
  private fallbackIdentity: string | undefined;
  private readonly resolvConfPath: string;
  private lastStaleWarning = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: ResolverOptions) {
    this.resolvConfPath = options.resolvConfPath ?? '/etc/resolv.conf';
  }

  /** Every address of `host`, IPv6 and IPv4, in the system's preferred order. */
  async resolve(host: string): Promise<LookupAddress[]> {
    const family = isIP(host);
    if (family !== 0) return [{ address: host, family }];
    try {
      return await dns.promises.lookup(host, { all: true, order: 'verbatim' });
    } catch (systemError: unknown) {
      const addresses = await this.resolveWithFallback(host).catch(() => undefined);
      if (!addresses || addresses.length === 0) throw systemError;
      const now = (this.options.now ?? Date.now)();
      const repeated = now - this.lastStaleWarning < Limits.staleResolverWarningIntervalMs;
      if (!repeated) this.lastStaleWarning = now;
      this.options.logger[repeated ? 'debug' : 'warn'](
        { host, error: (systemError as Error).message },
        'the system resolver failed where a fresh DNS query succeeded: its state is stale (an old glibc after a network change). mailbridge uses fresh queries whenever it fails (repeats are logged at debug level for 10 minutes); updating glibc (Debian: libc6 >= 2.36-9+deb12u9) or restarting mailbridge clears it',
      );
      return addresses;
    }
  }

  /** A `lookup` function for net.connect, so Happy Eyeballs (autoSelectFamily) sees every address. */
  readonly lookup = (
    hostname: string,
    options: dns.LookupOptions,
    callback: (
      error: NodeJS.ErrnoException | null,
      address: string | LookupAddress[],
      family?: number,
    ) => void,
  ): void => {
    this.resolve(hostname).then(
      (addresses) => {
        if (options.all) callback(null, addresses);
        else callback(null, addresses[0]?.address ?? '', addresses[0]?.family);
      },
      (error: NodeJS.ErrnoException) => callback(error, []),
    );
  };

  private async resolveWithFallback(host: string): Promise<LookupAddress[]> {
    const resolver = await this.currentFallback();
    const [v6, v4] = await Promise.allSettled([resolver.resolve6(host), resolver.resolve4(host)]);
    const addresses: LookupAddress[] = [];
    if (v6.status === 'fulfilled') addresses.push(...v6.value.map((address) => ({ address, family: 6 })));
    if (v4.status === 'fulfilled') addresses.push(...v4.value.map((address) => ({ address, family: 4 })));
    if (addresses.length === 0) {
      // A failed Resolver may hold a dead nameserver list: start afresh next time.
      this.fallback = undefined;
    }
    return addresses;
  }

  private async currentFallback(): Promise<dns.promises.Resolver> {
    const identity = await this.resolvConfIdentity();
    if (!this.fallback || identity.key !== this.fallbackIdentity) {
      this.fallback = new dns.promises.Resolver({ timeout: 2000, tries: 2 });
      this.fallbackIdentity = identity.key;
    }
    return this.fallback;
  }

  private async resolvConfIdentity(): Promise<ResolvConfIdentity> {
    try {
      const s = await stat(this.resolvConfPath);
      return { key: `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}` };
    } catch {
      return { key: 'missing' };
    }
  }
}
