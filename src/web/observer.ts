import type { Metrics } from '../metrics.ts';
import type { Observer } from '../observer.ts';
import type { AccountActivity } from './activity.ts';

/** The daemon's events as Prometheus counters and as the console's per-account facts. */
export function consoleObserver(metrics: Metrics, activity: AccountActivity): Observer {
  const protocolLabel = (protocol: string) => ({ protocol: protocol.toLowerCase() });
  const open = (protocol: string, change: number) => {
    const labels = protocolLabel(protocol);
    metrics.gauge(
      'mailbridge_connections_open',
      metrics.value('mailbridge_connections_open', labels) + change,
      labels,
    );
  };
  return {
    connectionOpened: (protocol) => {
      metrics.increment('mailbridge_connections_total', protocolLabel(protocol));
      open(protocol, 1);
    },
    connectionClosed: (protocol) => open(protocol, -1),
    loginSucceeded: (protocol, account, serverSection) => {
      metrics.increment('mailbridge_logins_total', { ...protocolLabel(protocol), result: 'succeeded' });
      activity.login(account, serverSection);
    },
    loginFailed: (protocol, account, error) => {
      metrics.increment('mailbridge_logins_total', { ...protocolLabel(protocol), result: 'failed' });
      activity.failure(account, error);
    },
    tokenRefreshed: (succeeded) =>
      metrics.increment('mailbridge_token_refreshes_total', { result: succeeded ? 'succeeded' : 'failed' }),
    authorisationWaited: () => metrics.increment('mailbridge_authorisation_waits_total'),
  };
}
