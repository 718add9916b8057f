// Runs ONE k6 script under Node (started by check.mjs as
// `node --import ./register.mjs run-script.mjs SCRIPT`): loads it with the k6 modules mapped to
// the stand-ins, checks its options, runs setup(), then each scenario's exec function (the
// default function when there are no scenarios) for a few iterations, round robin so scenarios
// meant to overlap interleave, then teardown() and handleSummary(). Writes its verdict as JSON
// to $HERALD_K6_RESULT and exits 1 when anything failed: an exception, a failed check(), an
// answer the request's response callback does not expect, or invalid options.
import { pathToFileURL } from 'node:url';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { state, metrics, failures, checks, unexpected, counters, recordBuiltin, fail } from './runtime/state.mjs';
import { validateOptions } from './runtime/options.mjs';
import { evaluate, aggregate } from './runtime/thresholds.mjs';
import { durationMs } from './runtime/options.mjs';
import { stop } from './runtime/sync-http.mjs';

const script = path.resolve(process.argv[2] || '');
const env = JSON.parse(process.env.HERALD_K6_ENV || '{}');
const iterations = Number(process.env.HERALD_K6_ITERATIONS || 2);
const resultFile = process.env.HERALD_K6_RESULT;

state.script = path.basename(script);
globalThis.__ENV = { ...env };
globalThis.__VU = 0;
globalThis.__ITER = 0;
globalThis.open = () => {
  throw new Error('open() is not supported by the Node check');
};

function firstLines(e, n = 4) {
  const s = e && e.stack ? e.stack : String(e);
  return s.split('\n').slice(0, n).join('\n    ');
}

let mod = null;
try {
  mod = await import(pathToFileURL(script).href);
} catch (e) {
  fail('init', `loading the script failed: ${firstLines(e)}`);
}

let options = null;
let data;
const t0 = Date.now();
let ranSetup = false;

if (mod) {
  options = mod.options;
  for (const problem of validateOptions(options, mod, metrics)) fail('options', problem);
  state.options = options || {};
}

function runStage(stage, fn) {
  state.stage = stage;
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    fail(stage, `${stage} threw: ${firstLines(e)}`);
    return { ok: false };
  } finally {
    state.groups = [];
  }
}

if (mod && !failures.some((f) => f.kind === 'options')) {
  let setupOK = true;
  if (typeof mod.setup === 'function') {
    const r = runStage('setup', () => mod.setup());
    setupOK = r.ok;
    ranSetup = true;
    if (r.ok) {
      try {
        data = r.value === undefined ? undefined : JSON.parse(JSON.stringify(r.value));
      } catch (e) {
        setupOK = false;
        fail('setup', `setup() returned data that is not JSON-serialisable (k6 copies it to every VU): ${e.message}`);
      }
    }
  }
  if (setupOK) {
    const scenarios = options && options.scenarios
      ? Object.entries(options.scenarios).sort((a, b) => durationMs(a[1].startTime || '0s') - durationMs(b[1].startTime || '0s'))
      : [['default', { executor: 'per-vu-iterations', exec: 'default' }]];
    for (let i = 0; i < iterations; i++) {
      scenarios.forEach(([name, sc], idx) => {
        state.stage = 'iteration';
        state.scenario = name;
        state.executor = sc.executor;
        state.scenarioTags = sc.tags || {};
        state.vu = idx + 1;
        state.iterInScenario = i;
        globalThis.__VU = idx + 1;
        globalThis.__ITER = i;
        globalThis.__ENV = { ...env, ...(sc.env || {}) };
        const fn = mod[sc.exec || 'default'];
        const started = performance.now();
        try {
          fn(data);
        } catch (e) {
          fail('iteration', `scenario ${name}, iteration ${i}: ${sc.exec || 'default'}() threw: ${firstLines(e)}`);
        } finally {
          state.groups = [];
          recordBuiltin('iterations', 1, {});
          recordBuiltin('iteration_duration', performance.now() - started, {});
          state.iterInTest++;
          counters.iterations++;
        }
      });
    }
    state.scenario = '';
    state.scenarioTags = {};
    globalThis.__ENV = { ...env };
    globalThis.__VU = 0;
    if (typeof mod.teardown === 'function') runStage('teardown', () => mod.teardown(data));
  }
}

const seconds = (Date.now() - t0) / 1000;
const thresholdRows = options && options.thresholds && !failures.some((f) => f.kind === 'options') ? evaluate(options.thresholds, metrics, seconds) : [];

if (mod && typeof mod.handleSummary === 'function') {
  const summary = { metrics: {}, root_group: { name: '', path: '', checks: [], groups: [] }, options: { summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)'] }, state: { testRunDurationMs: seconds * 1000 } };
  for (const [name, m] of metrics) summary.metrics[name] = { type: m.type, contains: m.isTime ? 'time' : 'default', values: {} };
  const r = runStage('handleSummary', () => mod.handleSummary(summary));
  if (r.ok && (typeof r.value !== 'object' || r.value === null)) fail('handleSummary', 'handleSummary() must return an object of {destination: content}');
}

// Every failed check is a failure of the run, named by the check.
for (const c of checks.values()) {
  if (c.fails) {
    fail('check', `check "${c.name}"${c.group ? ` in group ${c.group}` : ''} failed ${c.fails} of ${c.passes + c.fails} times (scenario ${[...c.scenarios].join(', ')}); e.g. ${c.example}`);
  }
}
for (const u of unexpected.values()) {
  const why = u.status === 0 ? `no answer (${u.error})` : `unexpected ${u.status}`;
  fail('http', `${u.method} ${u.name}: ${why} x${u.count} (scenario ${u.scenario}; first ${u.url}): ${u.body}`);
}

// Custom metrics, summarised per tag value of interest (tier, jurisdiction, region), for the report.
const summaries = [];
for (const m of metrics.values()) {
  if (!m.custom || !m.samples.length) continue;
  const groups = new Map();
  for (const s of m.samples) {
    const key = ['tier', 'jurisdiction', 'region'].filter((k) => s.tags[k] !== undefined).map((k) => `${k}:${s.tags[k]}`).join(',');
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(s.value);
  }
  for (const [key, values] of groups) {
    const agg = m.type === 'trend' ? { med: aggregate('trend', values, 'med', seconds), 'p(99)': aggregate('trend', values, 'p(99)', seconds), max: aggregate('trend', values, 'max', seconds) }
      : m.type === 'rate' ? { rate: aggregate('rate', values, 'rate', seconds) }
      : m.type === 'counter' ? { count: aggregate('counter', values, 'count', seconds) }
      : { value: aggregate('gauge', values, 'value', seconds) };
    summaries.push({ metric: key ? `${m.name}{${key}}` : m.name, samples: values.length, ...agg });
  }
}

const result = {
  script: state.script,
  ok: failures.length === 0,
  seconds,
  requests: counters.requests,
  iterations: counters.iterations,
  ranSetup,
  scenarios: options && options.scenarios ? Object.keys(options.scenarios) : ['default'],
  checks: [...checks.values()].map((c) => ({ name: c.name, group: c.group, passes: c.passes, fails: c.fails })),
  thresholds: thresholdRows,
  summaries,
  failures,
};
if (resultFile) writeFileSync(resultFile, JSON.stringify(result, null, 2));
await stop();
process.exit(result.ok ? 0 : 1);
