/**
 * Whether an error is the disk (or the user's quota) being full. Checked on
 * the code where the error is the file system's own, and on the message
 * where a layer above wrapped it (the downloader's "writing …: ENOSPC: …").
 */
export function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return true;
  return err instanceof Error && /\b(ENOSPC|EDQUOT)\b/.test(err.message);
}

/** The reason a deployment that ran out of disk reports; operators and the control plane match its prefix. */
export function diskFullReason(err: unknown): string {
  return `disk full: ${err instanceof Error ? err.message : String(err)}`;
}
