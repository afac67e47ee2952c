import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type TestCertificates = {
  readonly caCertPath: string;
  readonly certPath: string;
  readonly keyPath: string;
};

// Short-lived on purpose: these files live in temp dirs and must never be mistaken for anything lasting.
const VALID_DAYS = '2';
const OPENSSL_TIMEOUT_MS = 20_000;

// P-256 keys are generated in milliseconds, where RSA would add a noticeable pause to every test file.
const KEY_ARGS = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

// The server certificate must satisfy Node's own checks (the proxy verifies upstream certificates), which look
// only at subjectAltName, for a DNS name and for an IP address alike. An ECDSA key only signs (hence no
// keyEncipherment); extendedKeyUsage keeps strict TLS stacks such as Python's ssl module happy too.
const SERVER_EXTENSIONS = [
  'basicConstraints = critical, CA:FALSE',
  'keyUsage = critical, digitalSignature',
  'extendedKeyUsage = serverAuth',
  'subjectAltName = DNS:localhost, DNS:mail.test, IP:127.0.0.1, IP:::1',
  'subjectKeyIdentifier = hash',
  'authorityKeyIdentifier = keyid',
].join('\n');

async function openssl(args: readonly string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: OPENSSL_TIMEOUT_MS });
  } catch (error: unknown) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new Error(`openssl ${args[0] ?? ''} failed: ${detail}`);
  }
}

/** Writes a throwaway CA and a `localhost`/`127.0.0.1`/`::1` server certificate signed by it into `dir`. */
export async function createTestCertificates(dir: string): Promise<TestCertificates> {
  await mkdir(dir, { recursive: true });
  const caKeyPath = join(dir, 'ca.key');
  const caCertPath = join(dir, 'ca.crt');
  const keyPath = join(dir, 'server.key');
  const csrPath = join(dir, 'server.csr');
  const certPath = join(dir, 'server.crt');
  const extPath = join(dir, 'server.ext');

  await openssl([
    'req',
    '-x509',
    ...KEY_ARGS,
    '-keyout',
    caKeyPath,
    '-out',
    caCertPath,
    '-days',
    VALID_DAYS,
    '-subj',
    '/CN=mailbridge test CA',
    '-addext',
    'basicConstraints = critical, CA:TRUE',
    '-addext',
    'keyUsage = critical, keyCertSign, cRLSign',
  ]);
  await openssl(['req', '-new', ...KEY_ARGS, '-keyout', keyPath, '-out', csrPath, '-subj', '/CN=localhost']);
  await writeFile(extPath, `${SERVER_EXTENSIONS}\n`);
  await openssl([
    'x509',
    '-req',
    '-in',
    csrPath,
    '-CA',
    caCertPath,
    '-CAkey',
    caKeyPath,
    // An explicit serial avoids the `.srl` file -CAcreateserial would leave next to the CA.
    '-set_serial',
    `0x${randomBytes(8).toString('hex')}`,
    '-days',
    VALID_DAYS,
    '-extfile',
    extPath,
    '-out',
    certPath,
  ]);
  return { caCertPath, certPath, keyPath };
}

/** The SHA-256 fingerprint of the certificate a TLS server on 127.0.0.1 presents now, trusted or not. */
export function servedCertificateFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.destroy();
    });
    socket.on('error', reject);
  });
}
