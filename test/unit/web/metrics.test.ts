import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metrics } from '../../../src/metrics.ts';

describe('Metrics', () => {
  it('renders every family with HELP and TYPE, and an untouched unlabelled counter as 0', () => {
    const text = new Metrics().render();
    assert.match(
      text,
      /^# HELP mailbridge_connections_total .+\n# TYPE mailbridge_connections_total counter\n/,
    );
    assert.match(text, /\nmailbridge_authorisation_waits_total 0\n/);
    assert.doesNotMatch(text, /mailbridge_logins_total\{/);
    assert.ok(text.endsWith('\n'));
  });

  it('counts per label set, sorted, with label values escaped', () => {
    const metrics = new Metrics();
    metrics.increment('mailbridge_logins_total', { result: 'succeeded', protocol: 'IMAP' });
    metrics.increment('mailbridge_logins_total', { protocol: 'IMAP', result: 'succeeded' }, 2);
    metrics.increment('mailbridge_logins_total', { protocol: 'SMTP', result: 'failed' });
    metrics.increment('mailbridge_connections_open', { protocol: 'a"b\\c\nd' });
    assert.equal(metrics.value('mailbridge_logins_total', { protocol: 'IMAP', result: 'succeeded' }), 3);
    const text = metrics.render();
    assert.match(
      text,
      /\nmailbridge_logins_total\{protocol="IMAP",result="succeeded"\} 3\nmailbridge_logins_total\{protocol="SMTP",result="failed"\} 1\n/,
    );
    assert.match(text, /\nmailbridge_connections_open\{protocol="a\\"b\\\\c\\nd"\} 1\n/);
  });

  it('gauges go up, down and are set; clear drops states nobody is in any more', () => {
    const metrics = new Metrics();
    metrics.increment('mailbridge_connections_open', { protocol: 'POP' });
    metrics.increment('mailbridge_connections_open', { protocol: 'POP' }, -1);
    assert.equal(metrics.value('mailbridge_connections_open', { protocol: 'POP' }), 0);
    metrics.gauge('mailbridge_accounts', 2, { token_state: 'valid' });
    metrics.clear('mailbridge_accounts');
    metrics.gauge('mailbridge_accounts', 1, { token_state: 'expired' });
    const text = metrics.render();
    assert.doesNotMatch(text, /token_state="valid"/);
    assert.match(text, /\nmailbridge_accounts\{token_state="expired"\} 1\n/);
  });

  it('refuses a counter going down and labels other than the documented ones', () => {
    const metrics = new Metrics();
    assert.throws(
      () => metrics.increment('mailbridge_token_refreshes_total', { result: 'failed' }, -1),
      RangeError,
    );
    assert.throws(
      () => metrics.increment('mailbridge_token_refreshes_total', { account: 'a@b' }),
      /takes the labels/,
    );
    assert.throws(
      () => metrics.increment('mailbridge_authorisation_waits_total', { result: 'x' }),
      /takes the labels/,
    );
  });
});
