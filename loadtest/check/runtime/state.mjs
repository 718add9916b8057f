// The state one script's run shares between the k6 stand-ins (k6, k6/http, k6/metrics,
// k6/execution) and the runner: the execution context (scenario, VU, iteration, group), the
// metrics registry with every sample, the checks, and the failures the run is judged by.

export const state = {
  script: '',
  scenario: '', // name of the running scenario ('' in setup/teardown: k6 tags those runs with no scenario)
  executor: '',
  scenarioTags: {}, // the running scenario's options.scenarios.<name>.tags
  stage: 'init', // init | setup | iteration | teardown
  vu: 0, // __VU: 0 in init of the first VU, setup and teardown, as in k6
  iterInScenario: 0,
  iterInTest: 0,
  groups: [], // the current group() path
  startedAt: Date.now(),
  responseCallback: undefined, // http.setResponseCallback (null: none)
  options: {},
};

// name -> {name, type, isTime, samples: [{value, tags}]}
export const metrics = new Map();

// failures: what makes the check exit 1. Each {kind, message, scenario, detail}.
export const failures = [];

// checks: name -> {name, group, passes, fails, example}
export const checks = new Map();

// unexpected responses (per k6's responseCallback / expected statuses), grouped by name+status.
export const unexpected = new Map();

export const counters = { requests: 0, iterations: 0 };

export const BUILTIN = {
  checks: 'rate',
  data_received: 'counter',
  data_sent: 'counter',
  dropped_iterations: 'counter',
  group_duration: 'trend',
  http_req_blocked: 'trend',
  http_req_connecting: 'trend',
  http_req_duration: 'trend',
  http_req_failed: 'rate',
  http_req_receiving: 'trend',
  http_req_sending: 'trend',
  http_req_tls_handshaking: 'trend',
  http_req_waiting: 'trend',
  http_reqs: 'counter',
  iteration_duration: 'trend',
  iterations: 'counter',
  vus: 'gauge',
  vus_max: 'gauge',
};
const BUILTIN_TIME = new Set(Object.keys(BUILTIN).filter((n) => BUILTIN[n] === 'trend'));

const NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]{0,127}$/;

export function defineMetric(name, type, isTime = false) {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new Error(`invalid metric name ${JSON.stringify(name)}: k6 allows ${NAME_RE}`);
  }
  if (state.stage !== 'init') {
    throw new Error(`metric ${name}: custom metrics can only be created in the init context`);
  }
  const known = metrics.get(name);
  if (known) {
    if (known.type !== type) {
      throw new Error(`metric ${name} already defined as a ${known.type}, now as a ${type}`);
    }
    return known;
  }
  const m = { name, type, isTime: !!isTime, samples: [], custom: true };
  metrics.set(name, m);
  return m;
}

function builtin(name) {
  let m = metrics.get(name);
  if (!m) {
    m = { name, type: BUILTIN[name], isTime: BUILTIN_TIME.has(name), samples: [], custom: false };
    metrics.set(name, m);
  }
  return m;
}

// The tags k6 puts on every sample of this context, merged with the caller's.
export function contextTags(extra) {
  // k6's order: the test's tags (options.tags), the scenario's tags, the system tags, then
  // the call's own.
  const tags = Object.assign({}, state.options.tags || {}, state.scenarioTags || {});
  if (state.scenario) tags.scenario = state.scenario;
  tags.group = state.groups.length ? '::' + state.groups.join('::') : '';
  if (extra) {
    for (const [k, v] of Object.entries(extra)) {
      if (v === undefined || v === null) continue;
      if (typeof v === 'object') throw new Error(`tag ${k}: a tag value must be a string, number or boolean`);
      tags[k] = String(v);
    }
  }
  return tags;
}

export function addSample(name, value, tags, sys = false) {
  const m = sys ? builtin(name) : metrics.get(name);
  if (!m) throw new Error(`no metric ${name}`);
  let v = value;
  if (typeof v === 'boolean') v = v ? 1 : 0;
  if (typeof v !== 'number' || Number.isNaN(v)) {
    throw new Error(`metric ${name}: ${JSON.stringify(value)} is not a number or boolean`);
  }
  m.samples.push({ value: v, tags: contextTags(tags) });
}

export function recordBuiltin(name, value, tags) {
  addSample(name, value, tags, true);
}

export function fail(kind, message, detail) {
  failures.push({ kind, message, scenario: state.scenario || state.stage, detail });
}

export function recordCheck(name, ok, example) {
  const group = state.groups.length ? '::' + state.groups.join('::') : '';
  const key = `${group}\u0000${name}`;
  let c = checks.get(key);
  if (!c) {
    c = { name, group, passes: 0, fails: 0, example: null, scenarios: new Set() };
    checks.set(key, c);
  }
  c.scenarios.add(state.scenario || state.stage);
  if (ok) c.passes++;
  else {
    c.fails++;
    if (!c.example) c.example = example;
  }
}

export function recordUnexpected(req, res) {
  const key = `${req.method} ${res.tags.name} ${res.status}`;
  let u = unexpected.get(key);
  if (!u) {
    u = {
      method: req.method,
      name: res.tags.name,
      status: res.status,
      count: 0,
      url: res.url,
      body: excerpt(res.body),
      error: res.error,
      scenario: state.scenario || state.stage,
    };
    unexpected.set(key, u);
  }
  u.count++;
}

export function excerpt(body, n = 300) {
  if (body === null || body === undefined) return '';
  const s = typeof body === 'string' ? body : String(body);
  const t = s.trim();
  return t.length > n ? t.slice(0, n) + "…" : t;
}
