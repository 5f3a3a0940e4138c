/**
 * Test PKI made with the `openssl` CLI (OpenSSL 1.1 or 3): a CA, a server certificate for
 * localhost / 127.0.0.1 and a client certificate with CN=warren-client, both signed by the CA;
 * and, for trust failures, a second CA that signed neither.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "./broker.js";

export interface CertFiles {
  /** Path of the PEM certificate. */
  certPath: string;
  /** Path of the PEM private key (unencrypted PKCS#8). */
  keyPath: string;
  /** PEM text of the certificate. */
  cert: string;
  /** PEM text of the private key. */
  key: string;
}

export interface TestCerts {
  dir: string;
  /** Self-signed CA (CN=warren-test-ca). */
  ca: CertFiles;
  /** CN=localhost, subjectAltName DNS:localhost, IP:127.0.0.1, extendedKeyUsage serverAuth. */
  server: CertFiles;
  /** CN=warren-client, extendedKeyUsage clientAuth. */
  client: CertFiles;
}

export const CLIENT_CN = "warren-client";

// Own config file, so that neither the system openssl.cnf nor OPENSSL_CONF changes the result.
const OPENSSL_CNF = `
[req]
distinguished_name = dn
prompt = no
string_mask = utf8only

[dn]
CN = unused

[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer

[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
`;

function openssl(args: string[], cwd: string): Promise<string> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env["OPENSSL_CONF"];
  return run("openssl", args, { cwd, env, timeoutMs: 60_000 });
}

function serial(): string {
  // Positive 64-bit serial.
  const bytes = randomBytes(8);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return `0x${bytes.toString("hex")}`;
}

async function leaf(dir: string, name: string, cn: string, ext: string, cnf: string): Promise<void> {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.pem`);
  await openssl(
    [
      "req",
      "-new",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      csr,
      "-subj",
      `/CN=${cn}`,
      "-config",
      cnf,
    ],
    dir,
  );
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      join(dir, "ca.pem"),
      "-CAkey",
      join(dir, "ca.key"),
      "-set_serial",
      serial(),
      "-days",
      "825",
      "-sha256",
      "-extfile",
      cnf,
      "-extensions",
      ext,
      "-out",
      cert,
    ],
    dir,
  );
}

async function load(dir: string, name: string): Promise<CertFiles> {
  const certPath = join(dir, `${name}.pem`);
  const keyPath = join(dir, `${name}.key`);
  const [cert, key] = await Promise.all([readFile(certPath, "utf8"), readFile(keyPath, "utf8")]);
  return { certPath, keyPath, cert, key };
}

/**
 * Writes ca.{pem,key}, server.{pem,key} and client.{pem,key} into `dir` (created if missing) and
 * returns their paths and contents. Takes well under a second.
 */
export async function makeCerts(dir: string): Promise<TestCerts> {
  await mkdir(dir, { recursive: true });
  const cnf = join(dir, "openssl.cnf");
  await writeFile(cnf, OPENSSL_CNF);
  await selfSignedCa(dir, "ca", "warren-test-ca", cnf);
  await Promise.all([
    leaf(dir, "server", "localhost", "server_ext", cnf),
    leaf(dir, "client", CLIENT_CN, "client_ext", cnf),
  ]);
  const [ca, server, client] = await Promise.all([load(dir, "ca"), load(dir, "server"), load(dir, "client")]);
  return { dir, ca, server, client };
}

/**
 * A second CA with a key of its own (CN=warren-unrelated-ca), written as unrelated-ca.{pem,key}
 * into `dir`: it signed nothing makeCerts() made, so a client that trusts only it must refuse the
 * server certificate.
 */
export async function makeUnrelatedCa(dir: string): Promise<CertFiles> {
  await mkdir(dir, { recursive: true });
  const cnf = join(dir, "unrelated-openssl.cnf");
  await writeFile(cnf, OPENSSL_CNF);
  await selfSignedCa(dir, "unrelated-ca", "warren-unrelated-ca", cnf);
  return load(dir, "unrelated-ca");
}

async function selfSignedCa(dir: string, name: string, cn: string, cnf: string): Promise<void> {
  await openssl(
    [
      "req",
      "-x509",
      "-new",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      join(dir, `${name}.key`),
      "-out",
      join(dir, `${name}.pem`),
      "-subj",
      `/CN=${cn}`,
      "-days",
      "3650",
      "-sha256",
      "-set_serial",
      serial(),
      "-config",
      cnf,
      "-extensions",
      "v3_ca",
    ],
    dir,
  );
}
