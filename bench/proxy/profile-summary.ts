import { readFileSync } from 'node:fs';

/**
 * Where the time went in a V8 CPU profile: self time per function (with its file), heaviest first.
 *
 *   node --import tsx bench/proxy/profile-summary.ts FILE.cpuprofile [TOP]
 */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const [file, topText] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: profile-summary.ts FILE.cpuprofile [TOP]\n');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const selfUs = new Map<number, number>();
profile.samples.forEach((id, i) => {
  selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const byFunction = new Map<string, number>();
for (const [id, us] of selfUs) {
  const frame = byId.get(id)?.callFrame;
  if (!frame) continue;
  const where = frame.url
    ? `${frame.url.replace(/^.*\/(node_modules|dist|node:)/, '$1')}:${frame.lineNumber + 1}`
    : '';
  const key = `${frame.functionName || '(anonymous)'} ${where}`.trim();
  byFunction.set(key, (byFunction.get(key) ?? 0) + us);
}
const total = [...byFunction.values()].reduce((a, b) => a + b, 0);
const idle = byFunction.get('(idle)') ?? 0;
process.stdout.write(
  `profile ${((profile.endTime - profile.startTime) / 1e6).toFixed(1)} s, busy ${((total - idle) / 1e6).toFixed(2)} s\n`,
);
for (const [key, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, Number(topText ?? 30))) {
  process.stdout.write(
    `${(us / 1000).toFixed(1).padStart(9)} ms  ${((us / total) * 100).toFixed(1).padStart(5)}%  ${key}\n`,
  );
}
