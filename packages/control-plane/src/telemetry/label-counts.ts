/** Counts per label (class counts, label pairs), added up across windows, devices and buckets. */
export type LabelCounts = Record<string, number>;

// Null-prototype maps: a label may be any string, "__proto__" included.
export const emptyMap = <T>(): Record<string, T> => Object.create(null) as Record<string, T>;

/** Adds `from` into `into` and returns it. for-in over JSON.parse output: own keys only (plain objects), and quicker than Object.entries on this path. */
export function addLabelCounts(into: LabelCounts, from: LabelCounts): LabelCounts {
  for (const k in from) into[k] = (into[k] ?? 0) + (from[k] as number);
  return into;
}
