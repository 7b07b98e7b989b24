/** Formats a coordinate for SVG text: two decimals keep strings short and renders identical. */
export function num(value: number): string {
  return Number.isFinite(value) ? String(Math.round(value * 100) / 100) : '0';
}
