/**
 * The daemon's counters and gauges, rendered in the Prometheus text exposition format (version 0.0.4) at the
 * web console's `/metrics`. Only the names below exist, so a typo is a type error rather than a new series.
 *
 * Who updates what (the sessions and the token service are wired in by the daemon, not by this module):
 * - `mailbridge_connections_total{protocol}`: a client connection was accepted (protocol IMAP, POP or SMTP).
 * - `mailbridge_connections_open{protocol}`: connections open now (+1 at accept, -1 at close).
 * - `mailbridge_logins_total{protocol,result}`: client logins, result `succeeded` or `failed`.
 * - `mailbridge_token_refreshes_total{result}`: access-token refreshes, result `succeeded` or `failed`.
 * - `mailbridge_authorisation_waits_total`: logins that had to wait for a person to authorise the account.
 * - `mailbridge_authorisations_pending{kind}`: authorisations waiting for a person now (kind `code` or
 *   `device`); the web console sets it each time it renders the metrics.
 * - `mailbridge_accounts{token_state}`: configured accounts by the state of their cached access token (`valid`,
 *   `refresh-due`, `expired`, `none`); set by the web console likewise.
 *
 * A series is keyed by exactly the labels named in METRICS. No label carries an account name or anything else a person typed: metrics are often shipped elsewhere.
 */
interface MetricDefinition {
  type: 'counter' | 'gauge';
  help: string;
  labels: readonly string[];
}

export const METRICS = {
  mailbridge_connections_total: {
    type: 'counter',
    help: 'Client connections accepted, by protocol.',
    labels: ['protocol'],
  },
  mailbridge_connections_open: {
    type: 'gauge',
    help: 'Client connections open now, by protocol.',
    labels: ['protocol'],
  },
  mailbridge_logins_total: {
    type: 'counter',
    help: 'Client logins, by protocol and result (succeeded or failed).',
    labels: ['protocol', 'result'],
  },
  mailbridge_token_refreshes_total: {
    type: 'counter',
    help: 'Access token refreshes, by result (succeeded or failed).',
    labels: ['result'],
  },
  mailbridge_authorisation_waits_total: {
    type: 'counter',
    help: 'Logins that had to wait for a person to authorise the account.',
    labels: [],
  },
  mailbridge_authorisations_pending: {
    type: 'gauge',
    help: 'Authorisations waiting for a person now, by kind (code or device).',
    labels: ['kind'],
  },
  mailbridge_accounts: {
    type: 'gauge',
    help: 'Configured accounts by the state of their cached access token.',
    labels: ['token_state'],
  },
} as const satisfies Record<string, MetricDefinition>;

export type MetricName = keyof typeof METRICS;
export type CounterName = {
  [K in MetricName]: (typeof METRICS)[K]['type'] extends 'counter' ? K : never;
}[MetricName];
export type GaugeName = Exclude<MetricName, CounterName>;
export type Labels = Readonly<Record<string, string>>;

interface Series {
  labels: Labels;
  value: number;
}

export class Metrics {
  private readonly families = new Map<MetricName, Map<string, Series>>();

  /** Adds `by` (1) to a counter, or to a gauge (a negative `by` lowers a gauge). */
  increment(name: MetricName, labels: Labels = {}, by = 1): void {
    if (METRICS[name].type === 'counter' && !(by >= 0)) {
      throw new RangeError(`counter '${name}' cannot go down (by ${by})`);
    }
    const series = this.series(name, labels);
    series.value += by;
  }

  /** Sets a gauge. */
  gauge(name: GaugeName, value: number, labels: Labels = {}): void {
    this.series(name, labels).value = value;
  }

  /** Forgets every series of a gauge, before setting those that exist now (a state nobody is in any more). */
  clear(name: GaugeName): void {
    this.families.delete(name);
  }

  value(name: MetricName, labels: Labels = {}): number {
    return this.families.get(name)?.get(labelKey(labels))?.value ?? 0;
  }

  /** Every metric, in the text exposition format; an unlabelled counter nobody touched yet reads 0. */
  render(): string {
    const lines: string[] = [];
    for (const [name, definition] of Object.entries(METRICS) as [MetricName, MetricDefinition][]) {
      lines.push(`# HELP ${name} ${escapeHelp(definition.help)}`, `# TYPE ${name} ${definition.type}`);
      const family = this.families.get(name);
      if (!family || family.size === 0) {
        if (definition.type === 'counter' && definition.labels.length === 0) lines.push(`${name} 0`);
        continue;
      }
      const ordered = [...family.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      for (const [, series] of ordered)
        lines.push(`${name}${formatLabels(series.labels)} ${formatValue(series.value)}`);
    }
    return `${lines.join('\n')}\n`;
  }

  private series(name: MetricName, labels: Labels): Series {
    let family = this.families.get(name);
    if (!family) {
      family = new Map();
      this.families.set(name, family);
    }
    const key = labelKey(labels);
    let series = family.get(key);
    if (!series) {
      const expected: readonly string[] = METRICS[name].labels;
      const given = Object.keys(labels).sort();
      if (given.length !== expected.length || given.some((label) => !expected.includes(label))) {
        throw new RangeError(
          `metric '${name}' takes the labels {${expected.join(',')}}, not {${given.join(',')}}`,
        );
      }
      series = { labels: { ...labels }, value: 0 };
      family.set(key, series);
    }
    return series;
  }
}

/** The content type Prometheus expects for this format. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

function labelKey(labels: Labels): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (entries.length === 0) return '';
  // Label values escape backslash, double quote and line feed (the format's only escapes).
  const text = entries.map(
    ([key, value]) => `${key}="${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`,
  );
  return `{${text.join(',')}}`;
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}
