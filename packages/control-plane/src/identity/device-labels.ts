import { z } from 'zod';

/** A tag or group name: it ends up in selectors and URLs, so no spaces or separators. */
export const labelSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/, '1-64 of A-Z a-z 0-9 _ . : -, starting with a letter or digit');

/** A set of labels; duplicates collapse. */
export const labelListSchema = z
  .array(labelSchema)
  .max(64)
  .transform((l) => [...new Set(l)].sort());
