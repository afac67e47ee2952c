import type { Socket } from 'node:net';

/**
 * Bytes from one socket to the other after login, untouched, with back-pressure: what `from.pipe(to)` does,
 * but with the writes of one turn of the event loop gathered into one.
 *
 * A TLS socket hands over the plaintext of each TLS record as a chunk of its own (Dovecot sends 4 KiB
 * records), and pipe() writes each one with a system call of its own that also wakes the reader. Corking the
 * destination until the end of the current turn (setImmediate runs right after the poll phase) turns every
 * chunk read in that turn into one writev: the bytes are neither copied nor delayed past that turn.
 *
 * Reading stops, as with pipe(), when the destination's buffer passes its high-water mark and the kernel has
 * not taken it all; it goes on at 'drain'. The end of `from` ends `to`, after what is queued.
 */
export function relayBytes(from: Socket, to: Socket): void {
  let corked = false;
  let waiting = false;
  const resume = () => {
    waiting = false;
    from.resume();
  };
  const flush = () => {
    corked = false;
    if (to.destroyed) return;
    to.uncork();
    // writableLength is what the kernel did not take at once; writableNeedDrain means 'drain' will come.
    if (to.writableNeedDrain && to.writableLength > 0 && !waiting) {
      waiting = true;
      from.pause();
      to.once('drain', resume);
    }
  };
  from.on('data', (chunk: Buffer) => {
    if (to.destroyed || to.writableEnded) return;
    if (!corked) {
      corked = true;
      to.cork();
      setImmediate(flush);
    }
    to.write(chunk);
  });
  from.once('end', () => {
    if (corked) flush();
    if (!to.destroyed && !to.writableEnded) to.end();
  });
}
