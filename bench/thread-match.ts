/**
 * How long procmail waits for `mailbridge thread match` per message: from process start to exit, with 1,000,
 * 10,000 and 100,000 threads of 20 IDs in the database, for a message that matches (and so also writes) and
 * one that does not. Not a test: it prints a table to paste into bench/results/thread-match.md.
 *
 *   npm run bench:thread            (builds first; the runs measure dist/, what users run)
 *   npm run bench:thread -- 50      (50 runs per row instead of 30)
 *
 * Baselines in the same table say where the time goes: Node itself starting, the whole CLI starting
 * (`--version`), and the same match parsed by commander, which main.ts skips for a plain `thread match`.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ThreadStore } from '../src/thread/store.ts';

const RUNS = Number(process.argv[2] ?? 30);
const SIZES = [1_000, 10_000, 100_000];
const IDS_PER_THREAD = 20;
const root = join(import.meta.dirname, '..');
const main = join(root, 'dist', 'cli', 'main.js');
const HEADER = 'X-Muted: true';

// Shaped like real Message-IDs (about 50 characters), deterministic so every run sees the same database.
const id = (thread: number, index: number) =>
  `CAF${(thread * 7919 + index * 104729).toString(36).padStart(12, '0')}.${thread}.${index}@mail.example.com`;

function message(references: string[], own: string): Buffer {
  return Buffer.from(
    `From: someone@example.com\nTo: you@example.com\nSubject: Re: a thread\nMessage-ID: <${own}>\n` +
      `In-Reply-To: <${references.at(-1)}>\nReferences: ${references.map((ref) => `<${ref}>`).join('\n ')}\n` +
      `Date: Sat, 29 Nov 2026 10:00:00 +0000\n\n${'A line of body text.\n'.repeat(200)}`,
  );
}

/** Milliseconds from spawn to exit of one process, with `input` on stdin. */
function timeProcess(args: string[], input: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stdout.resume();
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code !== 0 || stderr !== '') reject(new Error(`${args.join(' ')} exited ${code}: ${stderr}`));
      else resolve(ms);
    });
    child.stdin.end(input);
  });
}

interface Stats {
  median: number;
  p90: number;
  min: number;
}

function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
  return { median: at(0.5), p90: at(0.9), min: sorted[0] as number };
}

/** Runs each measurement RUNS times, interleaved so that load from elsewhere spreads over all of them. */
async function measure(cases: Record<string, () => Promise<number>>): Promise<Record<string, Stats>> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((name) => [name, []]));
  for (const run of Object.values(cases)) await run(); // warm the file cache
  for (let i = 0; i < RUNS; i += 1) {
    for (const [name, run] of Object.entries(cases)) samples[name]?.push(await run());
  }
  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, stats(values)]));
}

const ms = (value: number) => value.toFixed(0);
const loadAverage = () =>
  loadavg()
    .map((value) => value.toFixed(2))
    .join(' ');

interface Database {
  size: number;
  path: string;
  bytes: number;
  fillSeconds: number;
  hit: () => Buffer;
  miss: () => Buffer;
}

/** A database of `size` threads of 20 IDs, and messages that do and do not belong to one of them. */
async function createDatabase(dir: string, size: number): Promise<Database> {
  const path = join(dir, `threads-${size}.sqlite`);
  const store = ThreadStore.open({ path });
  const filling = process.hrtime.bigint();
  store.import(
    'muted',
    (function* () {
      for (let thread = 0; thread < size; thread += 1) {
        yield Array.from({ length: IDS_PER_THREAD }, (_, index) => id(thread, index));
      }
    })(),
  );
  const fillSeconds = Number(process.hrtime.bigint() - filling) / 1e9;
  store.close();
  let n = 0;
  return {
    size,
    path,
    bytes: (await stat(path)).size,
    fillSeconds,
    hit: () => {
      const thread = (n * 7919) % size;
      return message(
        [0, 5, 10, 15, 19].map((index) => id(thread, index)),
        `reply.${size}.${n++}@example.net`,
      );
    },
    miss: () =>
      message(
        [1, 2, 3, 4, 5].map((index) => `unknown.${n}.${index}@example.org`),
        `m.${n++}@example.org`,
      ),
  };
}

/** The database's own share, without process start: open, look up (and learn on a hit), close. */
function timeInProcess(database: Database, hit: boolean): Stats {
  const samples: number[] = [];
  for (let i = 0; i < 200; i += 1) {
    const text = (hit ? database.hit() : database.miss()).toString('latin1');
    const ids = [...text.matchAll(/<([^>]+)>/g)].map((found) => found[1] as string);
    const begin = process.hrtime.bigint();
    const store = ThreadStore.open({ path: database.path });
    store.match('muted', ids, ids.slice(0, 1));
    store.close();
    samples.push(Number(process.hrtime.bigint() - begin) / 1e3);
  }
  return stats(samples);
}

async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'mailbridge-bench-'));
  try {
    // The same command through commander, as every other command is parsed: what main.ts's fast path saves.
    const viaCommander = join(dir, 'via-commander.mjs');
    await writeFile(
      viaCommander,
      `import { threadCommand } from ${JSON.stringify(pathToFileURL(join(root, 'dist', 'cli', 'thread-command.js')).href)};\n` +
        'await threadCommand().parseAsync(process.argv.slice(2), { from: "user" });\n',
    );
    const databases: Database[] = [];
    for (const size of SIZES) {
      databases.push(await createDatabase(dir, size));
      process.stderr.write(`database of ${size} threads ready\n`);
    }

    const started = new Date();
    const loadAtStart = loadAverage();
    const none = Buffer.alloc(0);
    // Every case of every size in one interleaved loop, baselines included, so that load from elsewhere on
    // the machine spreads evenly and the rows compare like with like.
    const cases: Record<string, () => Promise<number>> = {
      node: () => timeProcess(['-e', '0'], none),
      version: () => timeProcess([main, '--version'], none),
    };
    for (const database of databases) {
      const match = ['thread', 'match', '--db', database.path, '--list', 'muted', '--header', HEADER];
      cases[`hit${database.size}`] = () => timeProcess([main, ...match], database.hit());
      cases[`miss${database.size}`] = () => timeProcess([main, ...match], database.miss());
      cases[`commander${database.size}`] = () =>
        timeProcess([viaCommander, ...match.slice(1)], database.hit());
    }
    const results = await measure(cases);
    const cell = (name: string) => {
      const value = results[name] as Stats;
      return `${ms(value.median)} (${ms(value.p90)})`;
    };
    const node = results.node as Stats;

    const rows = databases.map((database) => {
      const { size } = database;
      const hit = results[`hit${size}`] as Stats;
      return (
        `| ${size.toLocaleString('en')} | ${(size * IDS_PER_THREAD).toLocaleString('en')} | ` +
        `${(database.bytes / 2 ** 20).toFixed(0)} MiB | ${cell(`hit${size}`)} | ${cell(`miss${size}`)} | ` +
        `${cell(`commander${size}`)} | ${ms(hit.median - node.median)} |`
      );
    });
    const inProcess = databases.map((database) => {
      const hit = timeInProcess(database, true);
      const miss = timeInProcess(database, false);
      return (
        `| ${database.size.toLocaleString('en')} | ${ms(hit.median)} µs (${ms(hit.p90)}) | ` +
        `${ms(miss.median)} µs (${ms(miss.p90)}) | ${database.fillSeconds.toFixed(1)} s |`
      );
    });

    const cpu = cpus();
    console.log(`\`mailbridge thread match\`, time per message from process start to exit: median (p90) of ${RUNS} runs, in ms

- machine: ${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} cores, ${process.platform} ${process.arch}; load average ${loadAtStart} at start, ${loadAverage()} at the end
- Node ${process.version}; ${started.toISOString()}

| threads | IDs | database | match, hit | match, miss | hit, parsed by commander | hit minus \`node -e 0\` |
|---:|---:|---:|---:|---:|---:|---:|
${rows.join('\n')}

| baseline | median (p90) |
|---|---:|
| \`node -e 0\`: Node starting, nothing else | ${cell('node')} |
| \`mailbridge --version\`: the CLI starting (commander, pino, the proxy and every command's modules) | ${cell('version')} |

The database's own share, in one process (open, look up, learn on a hit, close; median (p90) of 200):

| threads | hit | miss | filling the database (import) |
|---:|---:|---:|---:|
${inProcess.join('\n')}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await run();
