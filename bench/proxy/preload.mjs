// Preloaded into mailbridge (NODE_OPTIONS=--import) by the benchmark: the test bed starts mailbridge with its
// own arguments, and Node 20 refuses --cpu-prof in NODE_OPTIONS. Nothing here runs unless asked for.
//
// MAILBRIDGE_BENCH_PROFILE_DIR: a V8 CPU profile of the whole run, written at exit (same format as
// --cpu-prof: open it in Chrome DevTools, or summarise it with bench/proxy/profile-summary.ts).
// MAILBRIDGE_BENCH_PROBE_DIR: on SIGUSR2, a full GC, then process.memoryUsage() to <dir>/memory-<pid>.json,
// so the benchmark can tell JavaScript heap from native memory (OpenSSL, socket buffers).
// MAILBRIDGE_BENCH_SNAPSHOT=<dir> in the benchmark's environment: a heap snapshot too at each probe, for the
// Memory tab of Chrome DevTools.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';

const profileDir = process.env.MAILBRIDGE_BENCH_PROFILE_DIR;
if (profileDir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  // 100 µs, finer than the default 1 ms: relaying a 256 KiB message takes about a millisecond.
  session.post('Profiler.setSamplingInterval', { interval: 100 });
  session.post('Profiler.start');
  process.once('exit', () => {
    // A same-thread session answers synchronously, so this still runs inside 'exit'.
    session.post('Profiler.stop', (error, result) => {
      if (error) return;
      writeFileSync(join(profileDir, `mailbridge-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}

const probeDir = process.env.MAILBRIDGE_BENCH_PROBE_DIR;
if (probeDir) {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  process.on('SIGUSR2', () => {
    gc();
    writeFileSync(join(probeDir, `memory-${process.pid}.json`), JSON.stringify(process.memoryUsage()));
    const snapshots = process.env.MAILBRIDGE_BENCH_SNAPSHOT;
    if (snapshots) v8.writeHeapSnapshot(join(snapshots, `heap-${process.pid}-${Date.now()}.heapsnapshot`));
  });
}
