import { Counter, type Registry } from 'prom-client';

/**
 * A Prometheus counter that shows a running total kept elsewhere (a
 * component's `stats`), read at scrape time: the component counts once, in
 * its own terms, and the metric cannot drift from it. `read` gives one
 * total, or totals by the value of `label`.
 */
export function mirroredCounter(registers: Registry[], name: string, help: string, read: () => number): Counter;
export function mirroredCounter(registers: Registry[], name: string, help: string, read: () => Readonly<Record<string, number>>, label: string): Counter;
export function mirroredCounter(registers: Registry[], name: string, help: string, read: () => number | Readonly<Record<string, number>>, label?: string): Counter {
  return new Counter({
    name,
    help,
    registers,
    ...(label !== undefined ? { labelNames: [label] } : {}),
    collect() {
      const v = read();
      this.reset();
      if (typeof v === 'number') this.inc(v);
      else if (label !== undefined) for (const [k, n] of Object.entries(v)) this.inc({ [label]: k }, n);
    },
  });
}
