import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';

/** Small measuring helpers for the proxy benchmark: statistics, the machine, a process's memory and files. */
export interface Stats {
  count: number;
  median: number;
  p90: number;
  min: number;
  max: number;
}

export function stats(samples: readonly number[]): Stats {
  if (samples.length === 0)
    return { count: 0, median: Number.NaN, p90: Number.NaN, min: Number.NaN, max: Number.NaN };
  const sorted = [...samples].sort((a, b) => a - b);
  // Nearest rank (no interpolation): every figure reported is a sample that was actually measured.
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
  return {
    count: sorted.length,
    median: at(0.5),
    p90: at(0.9),
    min: sorted[0] as number,
    max: sorted[sorted.length - 1] as number,
  };
}

export function median(samples: readonly number[]): number {
  return stats(samples).median;
}

export interface Machine {
  /** The commit measured, with `+changes` when src/ differs from it (uncommitted work in the tree). */
  commit: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  date: string;
  loadAtStart: number[];
}

export function machine(): Machine {
  const list = cpus();
  return {
    commit: commit(),
    cpu: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${process.platform} ${release()}`,
    node: process.version,
    date: new Date().toISOString(),
    loadAtStart: loadAverage(),
  };
}

function commit(): string {
  const git = (args: string[]) =>
    spawnSync('git', args, { cwd: import.meta.dirname, encoding: 'utf8', timeout: 10_000 }).stdout.trim();
  const head = git(['rev-parse', '--short', 'HEAD']) || 'unknown';
  return git(['status', '--porcelain', '--', '../../src']) ? `${head}+changes` : head;
}

export function loadAverage(): number[] {
  return loadavg().map((value) => Math.round(value * 100) / 100);
}

/** Resident set size of `pid` in bytes, from /proc (what the kernel charges the process for). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/** CPU time (user + system) `pid` has used so far, in milliseconds (10 ms resolution: USER_HZ is 100). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name, which may itself contain spaces: utime is the 14th field.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** CPU time (user + system) of this process so far, in milliseconds. */
export function ownCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

/** Open file descriptors of `pid`. */
export function openFiles(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** The soft and hard RLIMIT_NOFILE of `pid` ('self' for this process). */
export function fileLimits(pid: number | 'self' = 'self'): { soft: number; hard: number } {
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
  const match = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(limits);
  const value = (text: string | undefined) =>
    text === 'unlimited' ? Number.POSITIVE_INFINITY : Number(text);
  return { soft: value(match?.[1]), hard: value(match?.[2]) };
}

/** Runs `task(0..count-1)` with at most `concurrency` in flight; results keep their index. */
export async function pool<T>(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<T>,
): Promise<T[]> {
  const results = new Array<T>(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const index = next++;
      results[index] = await task(index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}

export function elapsedMs(since: number): number {
  return performance.now() - since;
}

/** Rounds for the table and the JSON: whole numbers where they are large, one or two decimals below. */
export function round(value: number, decimals = 1): number {
  const factor = 10 ** decimals;
  return Math.round(value * factor) / factor;
}
