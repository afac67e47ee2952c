import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IniDocument } from '../../../src/config/ini.ts';
import { isMailbridgeError } from '../../../src/errors.ts';
import { escapeHtml, html } from '../../../src/web/html.ts';
import { readCookie } from '../../../src/web/sessions.ts';
import { parseAddress, webConsoleSettings } from '../../../src/web/settings.ts';

const doc = (text: string) => IniDocument.parse(text, 'test.config');

describe('web console settings', () => {
  it('is off unless the flag or web_console asks for it; the flag wins', () => {
    assert.equal(webConsoleSettings(undefined, doc('[emailproxy]\n')), undefined);
    assert.equal(webConsoleSettings(undefined, doc('')), undefined);
    assert.deepEqual(webConsoleSettings(undefined, doc('[emailproxy]\nweb_console = 127.0.0.1:8025\n')), {
      host: '127.0.0.1',
      port: 8025,
      loopback: true,
    });
    assert.equal(
      webConsoleSettings('[::1]:9000', doc('[emailproxy]\nweb_console = 127.0.0.1:8025\n'))?.port,
      9000,
    );
  });

  it('reads host:port, [v6]:port, a bare port and localhost', () => {
    assert.deepEqual(parseAddress('8025'), { host: '127.0.0.1', port: 8025, loopback: true });
    assert.deepEqual(parseAddress('[::1]:8025'), { host: '::1', port: 8025, loopback: true });
    assert.deepEqual(parseAddress('localhost:8025'), { host: '127.0.0.1', port: 8025, loopback: true });
    assert.deepEqual(parseAddress('192.0.2.1:80'), { host: '192.0.2.1', port: 80, loopback: false });
    for (const bad of [
      '',
      ':80',
      '127.0.0.1:0',
      '127.0.0.1:70000',
      '::1:80',
      '[127.0.0.1]:80',
      'a b:80',
      'host:',
    ]) {
      assert.throws(
        () => parseAddress(bad),
        (error: unknown) => isMailbridgeError(error, 'CONFIG_INVALID'),
        bad,
      );
    }
  });

  it('refuses an address beyond loopback unless web_console_allow_remote = True', () => {
    assert.throws(
      () => webConsoleSettings('0.0.0.0:8025', doc('')),
      /not a loopback address.*web_console_allow_remote = True/,
    );
    assert.equal(
      webConsoleSettings('0.0.0.0:8025', doc('[emailproxy]\nweb_console_allow_remote = True\n'))?.loopback,
      false,
    );
    assert.throws(
      () => webConsoleSettings('8025', doc('[emailproxy]\nweb_console_allow_remote = maybe\n')),
      /is not a boolean/,
    );
  });

  it('speaks HTTPS with both web_console_certificate_path and web_console_key_path, and refuses one alone', () => {
    const tls =
      '[emailproxy]\nweb_console_certificate_path = /etc/c.pem\nweb_console_key_path = /etc/k.pem\n';
    assert.deepEqual(webConsoleSettings('8025', doc(tls))?.tls, {
      certificatePath: '/etc/c.pem',
      keyPath: '/etc/k.pem',
    });
    assert.equal(webConsoleSettings('8025', doc(''))?.tls, undefined);
    assert.throws(
      () => webConsoleSettings('8025', doc('[emailproxy]\nweb_console_key_path = /etc/k.pem\n')),
      /has only one of web_console_certificate_path and web_console_key_path: give both for HTTPS, or neither/,
    );
  });
});

describe('web console helpers', () => {
  it('escapes every interpolated value unless it is html itself', () => {
    const name = `<img src=x onerror="alert('x')">&`;
    assert.equal(escapeHtml(name), '&#60;img src=x onerror=&#34;alert(&#39;x&#39;)&#34;&#62;&#38;');
    const inner = html`<b>${name}</b>`;
    assert.equal(
      html`<p>${inner}${[1, html`<i>2</i>`]}${undefined}${false}</p>`.text,
      `<p><b>${escapeHtml(name)}</b>1<i>2</i></p>`,
    );
  });

  it('reads one cookie among several', () => {
    assert.equal(readCookie('a=1; mailbridge_console_8025=abc; b=2', 'mailbridge_console_8025'), 'abc');
    assert.equal(readCookie('mailbridge_console_8026=abc', 'mailbridge_console_8025'), undefined);
    assert.equal(readCookie(undefined, 'x'), undefined);
  });
});
