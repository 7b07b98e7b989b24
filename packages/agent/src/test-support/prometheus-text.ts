/** One sample of the Prometheus text format: `name{labels} value`. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface ParsedMetrics {
  samples: Sample[];
  /** metric families by name, with their TYPE */
  families: Map<string, string>;
}

/** Reads the text exposition format well enough for tests: TYPE lines and samples. */
export function parseMetrics(text: string): ParsedMetrics {
  const samples: Sample[] = [];
  const families = new Map<string, string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) families.set(type[1] ?? '', type[2] ?? '');
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1] ?? '', x[2] ?? '']));
    samples.push({ name: m[1] ?? '', labels, value: Number(m[3]) });
  }
  return { samples, families };
}

/** The value of the first sample with this name whose labels include `labels`. */
export function sampleValue(m: ParsedMetrics, name: string, labels: Record<string, string>): number | undefined {
  return m.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}
