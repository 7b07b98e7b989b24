import type { Command } from 'commander';
import { formatZodError } from '@perch/shared';
import { z } from 'zod';
import { writeMosquittoConfig } from './mosquitto-config.js';

const argsSchema = z
  .object({
    out: z.string().min(1),
    host: z.string().min(1).optional(),
    port: z.coerce.number().int().min(1).max(65535).optional(),
    brokerDir: z.string().min(1).optional(),
    dynsecPlugin: z.string().min(1).optional(),
    tlsCert: z.string().min(1).optional(),
    tlsKey: z.string().min(1).optional(),
    tlsCa: z.string().min(1).optional(),
    requireClientCert: z.boolean().optional(),
  })
  .refine((a) => (a.tlsCert === undefined) === (a.tlsKey === undefined), 'give --tls-cert and --tls-key together');

/**
 * `perch-control-plane mosquitto-config --out <dir>`: the files a Mosquitto 2
 * broker needs to serve Perch (docs/deploy-external-broker.md). Prints where
 * they went as JSON; the control plane's password stays in its file.
 */
export function addMosquittoConfigCommand(program: Command, print: (text: string) => void = (t) => process.stdout.write(t)): void {
  program
    .command('mosquitto-config')
    .description('write mosquitto.conf, its dynamic security file and the control plane broker password for running against an external Mosquitto 2')
    .requiredOption('--out <dir>', 'folder to write into; an existing dynamic security file there is kept')
    .option('--host <host>', 'listener address (default 0.0.0.0)')
    .option('--port <n>', 'listener port (default 1883)')
    .option('--broker-dir <dir>', 'the folder as the broker will see it, when not --out')
    .option('--dynsec-plugin <file>', 'path of mosquitto_dynamic_security.so (default: Debian x86-64)')
    .option('--tls-cert <file>', 'server certificate (PEM)')
    .option('--tls-key <file>', 'server key (PEM)')
    .option('--tls-ca <file>', 'CA for client certificates')
    .option('--require-client-cert', 'require a client certificate signed by --tls-ca as well as the password')
    .action(async (raw: unknown) => {
      const r = argsSchema.safeParse(raw);
      if (!r.success) throw new Error(`mosquitto-config: ${formatZodError(r.error)}`);
      const a = r.data;
      const written = await writeMosquittoConfig({
        outDir: a.out,
        ...(a.host === undefined ? {} : { host: a.host }),
        ...(a.port === undefined ? {} : { port: a.port }),
        ...(a.brokerDir === undefined ? {} : { brokerDir: a.brokerDir }),
        ...(a.dynsecPlugin === undefined ? {} : { dynsecPlugin: a.dynsecPlugin }),
        ...(a.tlsCert === undefined || a.tlsKey === undefined
          ? {}
          : { tls: { certFile: a.tlsCert, keyFile: a.tlsKey, requireClientCertificate: a.requireClientCert ?? false, ...(a.tlsCa === undefined ? {} : { caFile: a.tlsCa }) } }),
      });
      const { password: _secret, ...shown } = written;
      print(`${JSON.stringify(shown, null, 2)}\n`);
    });
}
