import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { renderConfig } from '../../../src/cli/init-command.ts';
import { ConfigStore } from '../../../src/config/store.ts';
import { reviewConfig } from '../../../src/doctor/config-review.ts';
import { silentLogger } from '../../../src/log.ts';
import {
  identityPlatform,
  isMicrosoftMailHost,
  PROVIDER_IDS,
  PROVIDERS,
} from '../../../src/oauth/providers.ts';

let dir: string;
const NOW = new Date('2026-11-29T10:00:00Z');

describe('provider presets and the configuration init writes from them', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-providers-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('has the documented endpoints, scopes and servers', () => {
    const office = PROVIDERS.office365.oauth;
    assert.equal(office?.tokenUrl, 'https://login.microsoftonline.com/common/oauth2/v2.0/token');
    assert.match(
      office?.scope ?? '',
      /^https:\/\/outlook\.office\.com\/IMAP\.AccessAsUser\.All .*SMTP\.Send offline_access$/,
    );
    assert.equal(
      PROVIDERS.outlook.oauth?.permissionUrl,
      'https://login.microsoftonline.com/consumers/oauth2/v2.0/authorize',
    );
    assert.equal(PROVIDERS.gmail.oauth?.scope, 'https://mail.google.com/');
    assert.equal(PROVIDERS.gmail.oauth?.redirectUri, 'http://localhost');
    assert.equal(PROVIDERS.fastmail.oauth, undefined, 'no public registration: no invented endpoints');
    assert.deepEqual(
      PROVIDERS.office365.servers.map(
        (s) => `${s.protocol} ${s.serverAddress}:${s.serverPort}${s.serverStartTls ? ' STARTTLS' : ''}`,
      ),
      [
        'IMAP outlook.office365.com:993',
        'POP outlook.office365.com:995',
        'SMTP smtp.office365.com:587 STARTTLS',
      ],
    );
    assert.equal(identityPlatform('https://login.microsoftonline.com/x/oauth2/v2.0/token'), 'microsoft');
    assert.equal(identityPlatform('https://oauth2.googleapis.com/token'), 'google');
    assert.equal(identityPlatform('http://127.0.0.1:8080/token'), undefined);
    assert.ok(isMicrosoftMailHost('outlook.office365.com') && isMicrosoftMailHost('smtp-mail.outlook.com'));
    assert.ok(!isMicrosoftMailHost('imap.gmail.com'));
  });

  for (const id of PROVIDER_IDS) {
    it(`writes a ${id} configuration that mailbridge reads, with only the sample client values to fill in`, async () => {
      const path = join(dir, `${id}.config`);
      await writeFile(path, renderConfig(PROVIDERS[id], 'someone@example.com', path, NOW));
      const store = await ConfigStore.load({ configPath: path, logger: silentLogger() });
      const review = await reviewConfig(store);
      assert.deepEqual(
        review.findings.filter((f) => f.severity === 'error'),
        [],
      );
      if (id === 'fastmail') {
        assert.equal(review.listeners.length, 0);
        assert.equal(review.accounts.length, 0);
        return;
      }
      assert.deepEqual(
        review.listeners.map((l) => l.section),
        ['IMAP-1993', 'POP-1995', 'SMTP-1587'],
      );
      assert.deepEqual(
        review.accounts.map((a) => [a.section, a.flow]),
        [['someone@example.com', 'authorization_code']],
      );
      const warnings = review.findings.map((f) => f.message);
      assert.ok(
        warnings.every((w) => /still holds the example value/.test(w)),
        warnings.join('\n'),
      );
    });
  }

  it('says plainly that Fastmail has no public OAuth registration', () => {
    const text = renderConfig(PROVIDERS.fastmail, 'me@fastmail.com', 'x.config', NOW);
    assert.match(text, /Fastmail does not offer OAuth client registration to the public/);
    assert.match(text, /app passwords/);
    assert.match(text, /^# \[IMAP-1993\]$/m);
    assert.doesNotMatch(text, /^\[/m);
  });
});
