import dgram from 'node:dgram';

/**
 * A tiny authoritative DNS responder over UDP (RFC 1035 §4.1), enough for glibc and c-ares: A records from a
 * table, NXDOMAIN for other names, and AAAA either answered empty (NOERROR, no data) or never answered at all
 * — the half-answering server of the stale-resolver story, which is what makes glibc's send_dg() time out with
 * one of its two parallel answers.
 */
export interface DnsResponderOptions {
  address: string;
  port?: number;
  /** name (lower case, no final dot) → IPv4 address */
  records: Record<string, string>;
  dropAaaa: boolean;
}

export interface DnsResponder {
  /** Every question seen, as `name type`, for diagnostics. */
  readonly queries: string[];
  close(): Promise<void>;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;

export async function startDnsResponder(options: DnsResponderOptions): Promise<DnsResponder> {
  const socket = dgram.createSocket('udp4');
  const queries: string[] = [];
  socket.on('message', (query, peer) => {
    const parsed = parseQuestion(query);
    if (!parsed) return;
    queries.push(`${parsed.name} ${parsed.type}`);
    if (parsed.type === TYPE_AAAA && options.dropAaaa) return;
    const address = options.records[parsed.name];
    const answer = parsed.type === TYPE_A && address ? address : undefined;
    const rcode = address ? 0 : 3;
    socket.send(reply(query, parsed.questionEnd, rcode, answer), peer.port, peer.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(options.port ?? 53, options.address, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  return {
    queries,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}

function parseQuestion(query: Buffer): { name: string; type: number; questionEnd: number } | undefined {
  if (query.length < 12 || query.readUInt16BE(4) !== 1) return undefined;
  const labels: string[] = [];
  let at = 12;
  while (at < query.length) {
    const length = query[at] ?? 0;
    if (length === 0) break;
    if (length > 63) return undefined;
    labels.push(query.toString('latin1', at + 1, at + 1 + length));
    at += 1 + length;
  }
  if (at + 5 > query.length) return undefined;
  return { name: labels.join('.').toLowerCase(), type: query.readUInt16BE(at + 1), questionEnd: at + 5 };
}

function reply(query: Buffer, questionEnd: number, rcode: number, address: string | undefined): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  // QR, the query's RD, RA, and the response code.
  header.writeUInt16BE(0x8000 | (query.readUInt16BE(2) & 0x0100) | 0x0080 | rcode, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(address ? 1 : 0, 6);
  const parts = [header, query.subarray(12, questionEnd)];
  if (address) {
    const answer = Buffer.alloc(16);
    // A pointer to the question's name, type A, class IN, TTL 0 (nothing may cache it), 4 bytes of address.
    answer.writeUInt16BE(0xc00c, 0);
    answer.writeUInt16BE(TYPE_A, 2);
    answer.writeUInt16BE(1, 4);
    answer.writeUInt32BE(0, 6);
    answer.writeUInt16BE(4, 10);
    address.split('.').forEach((octet, i) => {
      answer[12 + i] = Number(octet);
    });
    parts.push(answer);
  }
  return Buffer.concat(parts);
}
