// Saves tokens for one account in a loop through the real ConfigStore (the built dist/, as the daemon runs
// it), printing each generation once its save has returned. Driven by crash-safe-saves.test.ts, which kills
// it at random moments, or runs two at once on one file.
//
// Environment: CONFIG (file), ACCOUNT (section), START (first generation), COUNT (how many saves),
// CHECK=1 to re-read the file after each save and report if this account's latest generation is missing.
import { readFileSync } from 'node:fs';
import { IniDocument } from '../../../dist/config/ini.js';
import { ConfigStore } from '../../../dist/config/store.js';
import { silentLogger } from '../../../dist/log.js';

const { CONFIG = '', ACCOUNT = '', START = '1', COUNT = '1000000', CHECK } = process.env;
const store = await ConfigStore.load({ configPath: CONFIG, logger: silentLogger() });
process.stdout.write('ready\n');
const first = Number(START);
for (let generation = first; generation < first + Number(COUNT); generation += 1) {
  // Long values, so a torn write would show: every field names its generation.
  const pad = 'x'.repeat(300);
  await store.saveTokens(ACCOUNT, {
    token_salt: `salt-${generation}`,
    token_iterations: '1200000',
    access_token: `access-${generation}-${pad}`,
    access_token_expiry: String(generation),
    refresh_token: `refresh-${generation}-${pad}`,
    last_activity: String(generation),
  });
  process.stdout.write(`${generation}\n`);
  if (CHECK) {
    const doc = IniDocument.parse(readFileSync(CONFIG, 'utf8'), CONFIG);
    const onDisk = doc.get(ACCOUNT, 'access_token_expiry');
    if (onDisk !== String(generation)) process.stdout.write(`lost ${generation} ${onDisk}\n`);
  }
}
