export interface Table {
  columns: string[];
  rows: string[][];
}

/** Plain-text table: first column left-aligned (labels), the rest right-aligned (numbers). */
export function formatTable({ columns, rows }: Table): string {
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ').trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(columns), rule, ...rows.map(line)].join('\n');
}
