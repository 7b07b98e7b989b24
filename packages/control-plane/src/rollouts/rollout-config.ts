import { z } from 'zod';

/** A URL rollout events are POSTed to; with a secret, each request carries an HMAC-SHA256 signature. */
export const rolloutWebhookSchema = z
  .object({
    url: z.url({ protocol: /^https?$/ }),
    /** a file holding the shared secret (trimmed); relative to the config file */
    secretFile: z.string().min(1).optional(),
  })
  .strict();
export type RolloutWebhookConfig = z.infer<typeof rolloutWebhookSchema>;

/** `rollouts:` in the control plane config. */
export const rolloutConfigSchema = z
  .object({
    /** how often the engine assigns devices, applies desired states and evaluates gates */
    tickSeconds: z.number().positive().max(300).default(5),
    webhooks: z.array(rolloutWebhookSchema).max(16).default([]),
  })
  .strict()
  .prefault({});
export type RolloutConfig = z.infer<typeof rolloutConfigSchema>;
