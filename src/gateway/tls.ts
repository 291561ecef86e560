/**
 * TLS for the HTTP gateway: a certificate chain and its private key, in PEM files. The
 * gateway then serves HTTPS only (TLS 1.2 or later); a plain HTTP request to it fails its
 * handshake and its connection is closed.
 */
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { InvalidArgumentError } from "../log/errors.js";

/** The lowest TLS version the gateway accepts. */
export const TLS_VERSION_MIN = "TLSv1.2";

export interface GatewayTls {
  /** PEM certificate chain. */
  readonly cert: string | Buffer;
  /** PEM private key. Never logged. */
  readonly key: string | Buffer;
}

function read(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new InvalidArgumentError(
      `cannot read the TLS ${what} ${path}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/**
 * Loads and checks a certificate and key (they must be PEM and belong together); the error
 * names the file and what is wrong. Both or neither must be given.
 */
export function loadTls(
  certFile: string | undefined,
  keyFile: string | undefined,
): GatewayTls | undefined {
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) {
    throw new InvalidArgumentError(
      "TLS needs both a certificate (--tls-cert) and its key (--tls-key)",
    );
  }
  const tls = { cert: read(certFile, "certificate"), key: read(keyFile, "key") };
  checkTls(tls, `${certFile} and ${keyFile}`);
  return tls;
}

/** Throws when the certificate and key cannot serve TLS together. */
export function checkTls(tls: GatewayTls, what = "the TLS certificate and key"): void {
  try {
    createSecureContext({ cert: tls.cert, key: tls.key, minVersion: TLS_VERSION_MIN });
  } catch (err) {
    throw new InvalidArgumentError(
      `${what} cannot serve TLS: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}
