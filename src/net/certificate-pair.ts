import { readFile } from 'node:fs/promises';
import tls from 'node:tls';
import { describeError, ErrorCode, MailbridgeError } from '../errors.ts';

/**
 * A certificate and key that mailbridge serves TLS with (a listener, the web console), loaded and checked
 * together: a missing file, a file that is not PEM and a key that does not match the certificate all fail
 * here, at start or reload, with the settings they came from named, not at a client's first handshake.
 */
export interface CertificatePair {
  options: tls.SecureContextOptions;
  context: tls.SecureContext;
}

/** `settings` names where the paths came from, e.g. `[IMAP-1993] local_certificate_path/local_key_path`. */
export async function loadCertificatePair(
  certificatePath: string,
  keyPath: string,
  settings: string,
): Promise<CertificatePair> {
  try {
    const [cert, key] = await Promise.all([readFile(certificatePath), readFile(keyPath)]);
    const options: tls.SecureContextOptions = { cert, key, minVersion: 'TLSv1.2' };
    return { options, context: tls.createSecureContext(options) };
  } catch (error: unknown) {
    throw new MailbridgeError(
      ErrorCode.CONFIG_INVALID,
      `cannot use ${settings} ('${certificatePath}', '${keyPath}'): ${describeError(error)}`,
      { cause: error },
    );
  }
}
