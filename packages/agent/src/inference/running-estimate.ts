/**
 * An exponentially weighted mean of a measurement that drifts (a run's
 * duration, a camera's frame spacing): each new sample moves it `weight` of
 * the way. Undefined until the first sample, so "not known yet" stays
 * distinct from zero.
 */
export class RunningEstimate {
  private current: number | undefined;

  constructor(private readonly weight = 0.2) {}

  get value(): number | undefined {
    return this.current;
  }

  add(sample: number): void {
    this.current = this.current === undefined ? sample : this.current + this.weight * (sample - this.current);
  }

  reset(): void {
    this.current = undefined;
  }
}
