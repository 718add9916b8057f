// Stand-in for k6/metrics: Trend, Rate, Counter, Gauge, recording every sample with the context
// tags (scenario, group) and the caller's, so thresholds on sub-metrics (name{tag:value}) can be
// evaluated.
import { defineMetric, addSample } from '../runtime/state.mjs';

class Metric {
  constructor(type, name, isTime) {
    this.name = name;
    this.type = type;
    defineMetric(name, type, isTime);
  }
  add(value, tags) {
    addSample(this.name, value, tags);
    return true;
  }
}

export class Trend extends Metric {
  constructor(name, isTime = false) {
    super('trend', name, isTime);
  }
}
export class Rate extends Metric {
  constructor(name) {
    super('rate', name, false);
  }
}
export class Counter extends Metric {
  constructor(name) {
    super('counter', name, false);
  }
}
export class Gauge extends Metric {
  constructor(name) {
    super('gauge', name, false);
  }
}

export default { Trend, Rate, Counter, Gauge };
