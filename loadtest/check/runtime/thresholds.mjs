// Evaluates thresholds over the recorded samples, as k6 does at the end of a run.
import { parseThresholdName, parseExpression } from './options.mjs';
import { BUILTIN } from './state.mjs';

function percentile(sorted, p) {
  if (!sorted.length) return 0;
  if (sorted.length === 1) return sorted[0];
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

export function aggregate(type, values, agg, seconds) {
  if (type === 'trend') {
    const s = [...values].sort((a, b) => a - b);
    if (agg === 'avg') return s.reduce((a, b) => a + b, 0) / (s.length || 1);
    if (agg === 'min') return s.length ? s[0] : 0;
    if (agg === 'max') return s.length ? s[s.length - 1] : 0;
    if (agg === 'med') return percentile(s, 50);
    const p = /^p\((.*)\)$/.exec(agg);
    return percentile(s, Number(p[1]));
  }
  if (type === 'rate') return values.length ? values.filter((v) => v !== 0).length / values.length : 0;
  if (type === 'counter') {
    const sum = values.reduce((a, b) => a + b, 0);
    return agg === 'count' ? sum : sum / Math.max(seconds, 1e-9);
  }
  if (agg === 'value') return values.length ? values[values.length - 1] : 0;
  if (agg === 'min') return values.length ? Math.min(...values) : 0;
  return values.length ? Math.max(...values) : 0;
}

const OPS = {
  '<': (a, b) => a < b,
  '<=': (a, b) => a <= b,
  '>': (a, b) => a > b,
  '>=': (a, b) => a >= b,
  '==': (a, b) => a === b,
  '===': (a, b) => a === b,
  '!=': (a, b) => a !== b,
};

export function samplesFor(metrics, key) {
  const { name, tags } = parseThresholdName(key);
  const m = metrics.get(name);
  const samples = m ? m.samples : [];
  return {
    type: m ? m.type : BUILTIN[name],
    values: samples.filter((s) => Object.entries(tags).every(([k, v]) => s.tags[k] === v)).map((s) => s.value),
  };
}

// evaluate answers one row per threshold expression: {key, expr, value, ok, samples}.
export function evaluate(thresholds, metrics, seconds) {
  const rows = [];
  for (const [key, list] of Object.entries(thresholds || {})) {
    const { type, values } = samplesFor(metrics, key);
    for (const t of list) {
      const expr = typeof t === 'string' ? t : t.threshold;
      const e = parseExpression(expr);
      const value = aggregate(type, values, e.agg, seconds);
      rows.push({ key, expr, value, ok: values.length ? OPS[e.op](value, e.value) : null, samples: values.length });
    }
  }
  return rows;
}
