import { z } from 'zod';

/**
 * TUF metadata travels over the device's MQTT connection, pulled the way a
 * TUF client pulls from a repository: the device asks for one file by its
 * repository name on `metadata/request` and the control plane answers on
 * `metadata/response`. Names are the repository's file names: `N.root.json`
 * for each root version (rotation walks them in order), `timestamp.json`,
 * `snapshot.json`, `targets.json`. A missing file is status 404, which ends a
 * client's root walk.
 */
export const TUF_METADATA_ROLES = ['root', 'timestamp', 'snapshot', 'targets'] as const;

export const metadataFileNameSchema = z
  .string()
  .regex(/^(?:[1-9][0-9]{0,8}\.)?(?:root|timestamp|snapshot|targets)\.json$/, 'a TUF metadata file name such as 2.root.json or timestamp.json');

/** Largest metadata file served; the client's own per-role limits are lower. */
export const MAX_METADATA_BYTES = 8 * 1024 * 1024;

export const metadataRequestSchema = z.object({
  requestId: z.string().min(1).max(64),
  name: metadataFileNameSchema,
});
export type MetadataRequest = z.infer<typeof metadataRequestSchema>;

export const metadataResponseSchema = z.discriminatedUnion('status', [
  z.object({
    requestId: z.string().min(1).max(64),
    name: metadataFileNameSchema,
    status: z.literal(200),
    /** the file exactly as the repository holds it (UTF-8 JSON) */
    body: z.string().max(MAX_METADATA_BYTES),
  }),
  z.object({
    requestId: z.string().min(1).max(64),
    name: metadataFileNameSchema,
    status: z.union([z.literal(404), z.literal(500)]),
    error: z.string().max(1000),
  }),
]);
export type MetadataResponse = z.infer<typeof metadataResponseSchema>;
