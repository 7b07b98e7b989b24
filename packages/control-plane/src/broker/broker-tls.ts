import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type TLSSocket, type TlsOptions } from 'node:tls';

export interface BrokerTlsOptions {
  /** the server's certificate, PEM, followed by its intermediates */
  certFile: string;
  keyFile: string;
  /** CA(s) client certificates are checked against: a client that presents a certificate must chain to one */
  caFile?: string | undefined;
  port: number;
}

export const DEFAULT_MQTTS_PORT = 8883;

type FileKey = 'certFile' | 'keyFile' | 'caFile';

function readAll(tls: BrokerTlsOptions, path: string, problems: string[]): Partial<Record<FileKey, Buffer>> {
  const out: Partial<Record<FileKey, Buffer>> = {};
  for (const key of ['certFile', 'keyFile', 'caFile'] as const) {
    const file = tls[key];
    if (file === undefined) continue;
    try {
      out[key] = readFileSync(file);
    } catch (err) {
      problems.push(`${path}.${key}: cannot read ${file}: ${(err as Error).message}`);
    }
  }
  return out;
}

/**
 * Every problem with the TLS files, each named by its config path (`path`),
 * or none when they make a server a client can trust: readable, PEM, a key
 * that goes with the certificate, a certificate not expired.
 */
export function brokerTlsProblems(tls: BrokerTlsOptions, path = 'mqtt.tls', now: number = Date.now()): string[] {
  const problems: string[] = [];
  const { certFile: cert, keyFile: key, caFile: ca } = readAll(tls, path, problems);
  if (cert) {
    try {
      const x = new X509Certificate(cert);
      if (Date.parse(x.validTo) < now) problems.push(`${path}.certFile: the certificate in ${tls.certFile} expired on ${x.validTo}`);
    } catch (err) {
      problems.push(`${path}.certFile: ${tls.certFile} is not a PEM certificate (${(err as Error).message})`);
    }
  }
  if (key) {
    try {
      createPrivateKey(key);
    } catch (err) {
      problems.push(`${path}.keyFile: ${tls.keyFile} is not a PEM private key (${(err as Error).message})`);
    }
  }
  if (ca) {
    try {
      new X509Certificate(ca);
    } catch (err) {
      problems.push(`${path}.caFile: ${tls.caFile} is not a PEM certificate (${(err as Error).message})`);
    }
  }
  if (problems.length === 0 && cert && key) {
    try {
      createSecureContext({ cert, key, ...(ca ? { ca } : {}) });
    } catch (err) {
      problems.push(`${path}: the key in ${tls.keyFile} does not go with the certificate in ${tls.certFile} (${(err as Error).message})`);
    }
  }
  return problems;
}

/** Server options for node:tls from the files, or an error listing every problem with them. */
export function brokerTlsServerOptions(tls: BrokerTlsOptions): TlsOptions {
  const problems = brokerTlsProblems(tls);
  if (problems.length > 0) throw new Error(`cannot start MQTT over TLS: ${problems.join('; ')}`);
  const files = readAll(tls, 'mqtt.tls', problems);
  return {
    cert: files.certFile,
    key: files.keyFile,
    minVersion: 'TLSv1.2',
    // A client certificate is asked for but not required: whether a device needs one is up to
    // authentication. One that is presented must verify (hasUnverifiedClientCertificate).
    ...(files.caFile ? { ca: files.caFile, requestCert: true, rejectUnauthorized: false } : {}),
  };
}

/** True when the client presented a certificate that does not chain to the configured CA; such a connection is closed. */
export function hasUnverifiedClientCertificate(socket: TLSSocket): boolean {
  if (socket.authorized) return false;
  const peer = socket.getPeerCertificate();
  return peer !== null && Object.keys(peer).length > 0;
}
