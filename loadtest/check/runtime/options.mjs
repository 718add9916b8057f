// What k6 checks of a script's `options` before it runs anything, checked here the same way:
// the scenarios (executor, its fields, durations, exec naming an exported function) and the
// thresholds (metric known, tag filter well formed, aggregation valid for the metric's type).
// Each problem is one message; an empty list means k6 would accept the options.
import { BUILTIN } from './state.mjs';

const TOP_LEVEL = new Set([
  'scenarios', 'thresholds', 'setupTimeout', 'teardownTimeout', 'summaryTrendStats', 'summaryTimeUnit',
  'tags', 'noConnectionReuse', 'noVUConnectionReuse', 'userAgent', 'insecureSkipTLSVerify',
  'discardResponseBodies', 'maxRedirects', 'batch', 'batchPerHost', 'httpDebug', 'vus', 'duration',
  'iterations', 'stages', 'systemTags', 'throw', 'hosts', 'dns', 'minIterationDuration', 'rps', 'ext',
  'cloud', 'noCookiesReset', 'tlsVersion', 'tlsCipherSuites', 'tlsAuth', 'blockHostnames',
  'localIPs', 'noSetup', 'noTeardown', 'paused', 'executionSegment', 'executionSegmentSequence',
  'noUsageReport', 'linger', 'console', 'summaryExport', 'setupTimeout',
]);

const COMMON = ['executor', 'startTime', 'gracefulStop', 'env', 'exec', 'tags', 'options'];
const EXECUTORS = {
  'shared-iterations': { keys: ['vus', 'iterations', 'maxDuration'], required: [] },
  'per-vu-iterations': { keys: ['vus', 'iterations', 'maxDuration'], required: [] },
  'constant-vus': { keys: ['vus', 'duration'], required: ['duration'] },
  'ramping-vus': { keys: ['startVUs', 'stages', 'gracefulRampDown'], required: ['stages'] },
  'constant-arrival-rate': { keys: ['rate', 'timeUnit', 'duration', 'preAllocatedVUs', 'maxVUs'], required: ['rate', 'duration', 'preAllocatedVUs'] },
  'ramping-arrival-rate': { keys: ['startRate', 'timeUnit', 'stages', 'preAllocatedVUs', 'maxVUs'], required: ['stages', 'preAllocatedVUs'] },
  'externally-controlled': { keys: ['vus', 'maxVUs', 'duration'], required: [] },
};
const DURATION_KEYS = new Set(['startTime', 'gracefulStop', 'maxDuration', 'duration', 'timeUnit', 'gracefulRampDown']);
const INT_KEYS = new Set(['vus', 'iterations', 'startVUs', 'rate', 'startRate', 'preAllocatedVUs', 'maxVUs']);

const DURATION_RE = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;

export function durationMs(v) {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string' || !DURATION_RE.test(v)) return NaN;
  let ms = 0;
  for (const [, n, , u] of v.matchAll(/(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) {
    ms += Number(n) * { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[u];
  }
  return ms;
}

function validDuration(v) {
  return typeof v === 'number' ? v >= 0 : !Number.isNaN(durationMs(v));
}

export function validateScenarios(scenarios, exportsObj) {
  const errs = [];
  if (typeof scenarios !== 'object' || scenarios === null || Array.isArray(scenarios)) {
    return ['options.scenarios: must be an object of named scenarios'];
  }
  if (!Object.keys(scenarios).length) errs.push('options.scenarios: empty');
  for (const [name, sc] of Object.entries(scenarios)) {
    const at = `options.scenarios.${name}`;
    if (!/^[0-9a-zA-Z_-]+$/.test(name)) errs.push(`${at}: scenario names are letters, digits, _ and -`);
    if (!sc || typeof sc !== 'object') {
      errs.push(`${at}: must be an object`);
      continue;
    }
    const ex = EXECUTORS[sc.executor];
    if (!ex) {
      errs.push(`${at}.executor: ${JSON.stringify(sc.executor)} is not a k6 executor (${Object.keys(EXECUTORS).join(', ')})`);
      continue;
    }
    const allowed = new Set([...COMMON, ...ex.keys]);
    for (const k of Object.keys(sc)) {
      if (!allowed.has(k)) errs.push(`${at}.${k}: unknown field for ${sc.executor} (k6 refuses it: json: unknown field "${k}")`);
    }
    for (const k of ex.required) {
      if (sc[k] === undefined) errs.push(`${at}.${k}: required by ${sc.executor}`);
    }
    for (const [k, v] of Object.entries(sc)) {
      if (DURATION_KEYS.has(k) && !validDuration(v)) errs.push(`${at}.${k}: ${JSON.stringify(v)} is not a duration ("30s", "1m30s")`);
      if (INT_KEYS.has(k) && !(Number.isInteger(v) && v >= 0)) errs.push(`${at}.${k}: ${JSON.stringify(v)} must be a non-negative integer`);
    }
    if (sc.executor === 'constant-vus' && sc.vus !== undefined && sc.vus < 1) errs.push(`${at}.vus: at least 1`);
    if ((sc.executor === 'constant-arrival-rate' || sc.executor === 'ramping-arrival-rate')) {
      if (sc.executor === 'constant-arrival-rate' && sc.rate !== undefined && sc.rate < 1) errs.push(`${at}.rate: at least 1 (use timeUnit for slower rates)`);
      if (sc.preAllocatedVUs !== undefined && sc.preAllocatedVUs < 1) errs.push(`${at}.preAllocatedVUs: at least 1`);
      if (sc.maxVUs !== undefined && sc.preAllocatedVUs !== undefined && sc.maxVUs < sc.preAllocatedVUs) {
        errs.push(`${at}.maxVUs: ${sc.maxVUs} is below preAllocatedVUs ${sc.preAllocatedVUs}`);
      }
    }
    if (sc.stages !== undefined) {
      if (!Array.isArray(sc.stages) || !sc.stages.length) errs.push(`${at}.stages: a non-empty array of {duration, target}`);
      else {
        sc.stages.forEach((st, i) => {
          if (!st || typeof st !== 'object') return errs.push(`${at}.stages[${i}]: {duration, target}`);
          for (const k of Object.keys(st)) if (k !== 'duration' && k !== 'target') errs.push(`${at}.stages[${i}].${k}: unknown field`);
          if (!validDuration(st.duration)) errs.push(`${at}.stages[${i}].duration: ${JSON.stringify(st.duration)} is not a duration`);
          if (!(Number.isInteger(st.target) && st.target >= 0)) errs.push(`${at}.stages[${i}].target: ${JSON.stringify(st.target)} must be a non-negative integer`);
        });
      }
    }
    const exec = sc.exec === undefined ? 'default' : sc.exec;
    if (typeof exec !== 'string' || typeof exportsObj[exec] !== 'function') {
      errs.push(`${at}.exec: ${JSON.stringify(exec)} is not a function the script exports`);
    }
    for (const field of ['env', 'tags']) {
      if (sc[field] === undefined) continue;
      if (typeof sc[field] !== 'object' || sc[field] === null) errs.push(`${at}.${field}: must be an object of strings`);
      else for (const [k, v] of Object.entries(sc[field])) if (typeof v !== 'string') errs.push(`${at}.${field}.${k}: must be a string, got ${typeof v}`);
    }
  }
  return errs;
}

const AGG = {
  trend: /^(avg|min|max|med|p\((\d+(\.\d+)?)\))$/,
  rate: /^rate$/,
  counter: /^(count|rate)$/,
  gauge: /^(value|min|max)$/,
};
const EXPR_RE = /^\s*([a-z]+(?:\(\s*\d+(?:\.\d+)?\s*\))?)\s*(<=|>=|===|==|!=|<|>)\s*(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)\s*$/i;

export function parseThresholdName(key) {
  const m = /^([^{}]+?)(?:\{(.*)\})?$/.exec(key);
  if (!m) return null;
  const name = m[1].trim();
  const tags = {};
  if (m[2] !== undefined) {
    if (!m[2].trim()) return null;
    for (const part of m[2].split(',')) {
      const i = part.indexOf(':');
      if (i <= 0) return null;
      const k = part.slice(0, i).trim();
      const v = part.slice(i + 1).trim();
      if (!k) return null;
      tags[k] = v;
    }
  }
  return { name, tags };
}

export function parseExpression(expr) {
  const m = EXPR_RE.exec(expr);
  if (!m) return null;
  return { agg: m[1].replace(/\s+/g, ''), op: m[2], value: Number(m[3]) };
}

export function validateThresholds(thresholds, metrics) {
  const errs = [];
  if (!thresholds || typeof thresholds !== 'object' || Array.isArray(thresholds)) {
    return ['options.thresholds: missing; the scripts must state their SLOs as thresholds'];
  }
  if (!Object.keys(thresholds).length) errs.push('options.thresholds: empty');
  for (const [key, list] of Object.entries(thresholds)) {
    const at = `options.thresholds[${JSON.stringify(key)}]`;
    const parsed = parseThresholdName(key);
    if (!parsed) {
      errs.push(`${at}: not "metric" or "metric{tag:value,...}"`);
      continue;
    }
    const m = metrics.get(parsed.name);
    const type = m ? m.type : BUILTIN[parsed.name];
    if (!type) {
      errs.push(`${at}: no metric named ${parsed.name} (neither built in nor created by the script)`);
      continue;
    }
    if (!Array.isArray(list) || !list.length) {
      errs.push(`${at}: must be a non-empty array of expressions`);
      continue;
    }
    list.forEach((t, i) => {
      const expr = typeof t === 'string' ? t : t && typeof t === 'object' ? t.threshold : undefined;
      if (t && typeof t === 'object') {
        for (const k of Object.keys(t)) {
          if (!['threshold', 'abortOnFail', 'delayAbortEval'].includes(k)) errs.push(`${at}[${i}].${k}: unknown field`);
        }
      }
      if (typeof expr !== 'string') return errs.push(`${at}[${i}]: a string like "p(99)<5000" or {threshold, abortOnFail}`);
      const e = parseExpression(expr);
      if (!e) return errs.push(`${at}[${i}]: ${JSON.stringify(expr)} is not "<aggregation> <op> <number>"`);
      if (!AGG[type].test(e.agg)) errs.push(`${at}[${i}]: ${e.agg} is not an aggregation of a ${type} (${parsed.name})`);
      const p = /^p\((.*)\)$/.exec(e.agg);
      if (p && !(Number(p[1]) >= 0 && Number(p[1]) <= 100)) errs.push(`${at}[${i}]: percentile ${p[1]} outside 0..100`);
    });
  }
  return errs;
}

export function validateOptions(options, exportsObj, metrics) {
  const errs = [];
  if (!options || typeof options !== 'object') return ['export const options: missing (k6 scripts here must export options with thresholds)'];
  for (const k of Object.keys(options)) {
    if (!TOP_LEVEL.has(k)) errs.push(`options.${k}: not a k6 option`);
  }
  if (options.scenarios !== undefined) {
    errs.push(...validateScenarios(options.scenarios, exportsObj));
    for (const k of ['vus', 'duration', 'iterations', 'stages']) {
      if (options[k] !== undefined) errs.push(`options.${k}: ignored by k6 when options.scenarios is set; put it in a scenario`);
    }
  } else if (typeof exportsObj.default !== 'function') {
    errs.push('no options.scenarios and no default function: k6 has nothing to run');
  }
  errs.push(...validateThresholds(options.thresholds, metrics));
  for (const k of ['setupTimeout', 'teardownTimeout']) {
    if (options[k] !== undefined && !validDuration(options[k])) errs.push(`options.${k}: ${JSON.stringify(options[k])} is not a duration`);
  }
  return errs;
}
