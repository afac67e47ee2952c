/**
 * Clock skew, measured against the HTTP Date header of the token endpoint. A wrong clock breaks certificate
 * checks (a certificate "not yet valid" or "expired") and, when it is hours off, the expiry times mailbridge
 * stores; providers themselves allow about five minutes of skew.
 */
export interface ClockReading {
  /** Positive when this computer is ahead of the server. */
  skewSeconds: number;
  serverDate: string;
}

/** Skew beyond this is worth a warning: Kerberos and Entra ID tolerate five minutes. */
export const CLOCK_SKEW_LIMIT_S = 300;

export function readSkew(localMs: number, dateHeader: string | null): ClockReading | undefined {
  if (!dateHeader) return undefined;
  const serverMs = Date.parse(dateHeader);
  if (Number.isNaN(serverMs)) return undefined;
  // The header has whole seconds and was written before the response travelled: a second either way is noise.
  return {
    skewSeconds: Math.round((localMs - serverMs) / 1000),
    serverDate: new Date(serverMs).toISOString(),
  };
}

export function describeSkew(reading: ClockReading): string {
  const magnitude = Math.abs(reading.skewSeconds);
  const amount = magnitude < 120 ? `${magnitude} s` : `${Math.round(magnitude / 60)} min`;
  return `this computer's clock is ${amount} ${reading.skewSeconds >= 0 ? 'ahead of' : 'behind'} the token endpoint's`;
}

/** Asks `url` for its Date header (a HEAD request: the answer's status does not matter). */
export async function measureSkew(
  url: string,
  options: { fetch?: typeof fetch; timeoutMs: number; now?: () => number },
): Promise<ClockReading | undefined> {
  const response = await (options.fetch ?? fetch)(url, {
    method: 'HEAD',
    redirect: 'manual',
    signal: AbortSignal.timeout(options.timeoutMs),
  });
  await response.body?.cancel();
  return readSkew((options.now ?? Date.now)(), response.headers.get('date'));
}
