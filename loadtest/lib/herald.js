// Shared helpers of Herald's k6 scenarios (loadtest/*.js): configuration from __ENV, the
// request shapes of the public API (docs/openapi-gateway.yaml), user registration, sends, the
// end-to-end latency probe (polling the recipient's inbox until the item is there), and the
// custom metrics every scenario reports and its thresholds judge.
//
// Every request builder answers [method, url, body, params], the form http.batch takes, so one
// shape serves a single call (`call(req)`) and a batch (`http.batch([req, ...])`). Requests are
// tagged with a short `name` (send, inbox_page, ...), so thresholds and the end-of-test summary
// group them without one entry per user id.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Trend, Rate, Counter } from 'k6/metrics';

// ---- configuration ------------------------------------------------------------------------

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const API_KEY = __ENV.API_KEY || '';
if (!API_KEY) {
  throw new Error('API_KEY is not set: k6 run -e API_KEY=hk_... (a key from `herald apikey create`; give it a high --rate-limit)');
}

// envInt reads an integer of at least min from __ENV, or answers def when it is unset.
export function envInt(name, def, min = 0) {
  const v = __ENV[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}=${v}: must be an integer >= ${min}`);
  return n;
}

// envNum reads a number of at least min (fractions allowed).
export function envNum(name, def, min = 0) {
  const v = __ENV[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name}=${v}: must be a number >= ${min}`);
  return n;
}

export function envStr(name, def) {
  const v = __ENV[name];
  return v === undefined || v === '' ? def : String(v);
}

// envList reads a comma-separated list ("DE,US").
export function envList(name, def) {
  return envStr(name, def)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

const DURATION_RE = /^(\d+(\.\d+)?(ms|s|m|h))+$/;

// envDuration reads a k6 duration ("90s", "5m", "1m30s") and answers it as a string.
export function envDuration(name, def) {
  const v = envStr(name, def);
  if (!DURATION_RE.test(v)) throw new Error(`${name}=${v}: must be a duration like 30s, 5m or 1m30s`);
  return v;
}

// seconds answers a k6 duration in seconds ("1m30s" -> 90).
export function seconds(d) {
  let s = 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let m;
  while ((m = re.exec(d)) !== null) s += Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]];
  return s;
}

// The SLOs every scenario's thresholds are written from (ops/prometheus/rules/alerts.yml,
// docs/runbook.md): accept -> delivered p99 per tier, and the share of failures per tier.
export const SLO = {
  transactionalP99Ms: 5000,
  socialP99Ms: 30000,
  transactionalErrorRate: 0.01,
  socialErrorRate: 0.05,
  gatewayErrorRate: 0.01, // HeraldGatewayErrorRatio
  inboxReadP99Ms: 250, // the floor `herald-dev loadtest` judges inbox reads by (loadtest/scenarios.go)
  prefsWriteP99Ms: 1000, // likewise for preference writes
};

// baseOptions: what every scenario shares; spread it into `options`.
export function baseOptions() {
  const batch = envInt('BATCH', 50, 1);
  return {
    setupTimeout: envDuration('SETUP_TIMEOUT', '10m'),
    teardownTimeout: envDuration('TEARDOWN_TIMEOUT', '2m'),
    batch,
    batchPerHost: batch,
    summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  };
}

// ---- metrics --------------------------------------------------------------------------------

// herald_e2e_ms{tier}: from just before the send's POST to the moment the item is seen in the
// recipient's inbox through the gateway. A probe that gives up after E2E_TIMEOUT records the
// timeout itself (a lower bound), so a p99 threshold fails when more than 1% time out.
export const e2eLatency = new Trend('herald_e2e_ms', true);
// herald_e2e_timeouts{tier}: share of probes that never saw their item.
export const e2eTimeouts = new Rate('herald_e2e_timeouts');
// herald_send_failed{tier}: share of sends not answered 202 with a well-formed body.
export const sendFailed = new Rate('herald_send_failed');
// herald_sends_accepted{tier}: sends answered 202.
export const sendsAccepted = new Counter('herald_sends_accepted');

// ---- requests -------------------------------------------------------------------------------

export function authHeaders() {
  return {
    Authorization: `Bearer ${API_KEY}`,
    'Content-Type': 'application/json',
    Accept: 'application/json',
  };
}

// params: headers with the API key, the request's name tag, and any extra params (tags are
// merged, responseCallback and timeout passed on).
export function params(name, extra) {
  const p = { headers: authHeaders(), tags: { name } };
  if (extra) {
    for (const k of Object.keys(extra)) {
      if (k === 'tags') p.tags = Object.assign({}, p.tags, extra.tags);
      else p[k] = extra[k];
    }
  }
  return p;
}

const enc = encodeURIComponent;

function query(q) {
  const parts = [];
  for (const k of Object.keys(q || {})) {
    if (q[k] === undefined || q[k] === null || q[k] === '') continue;
    parts.push(`${enc(k)}=${enc(String(q[k]))}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

export const req = {
  regions: (extra) => ['GET', `${BASE_URL}/v1/regions`, null, params('regions', extra)],
  putUser: (id, body, extra) => ['PUT', `${BASE_URL}/v1/users/${enc(id)}`, JSON.stringify(body), params('put_user', extra)],
  getUser: (id, extra) => ['GET', `${BASE_URL}/v1/users/${enc(id)}`, null, params('get_user', extra)],
  send: (body, extra) => ['POST', `${BASE_URL}/v1/notifications`, JSON.stringify(body), params('send', extra)],
  status: (id, extra) => ['GET', `${BASE_URL}/v1/notifications/${enc(id)}/status`, null, params('status', extra)],
  subscribe: (topic, id, extra) => ['PUT', `${BASE_URL}/v1/topics/${enc(topic)}/subscribers/${enc(id)}`, null, params('subscribe', extra)],
  topic: (topic, extra) => ['GET', `${BASE_URL}/v1/topics/${enc(topic)}`, null, params('topic_info', extra)],
  inbox: (id, q, extra) => ['GET', `${BASE_URL}/v1/users/${enc(id)}/notifications${query(q)}`, null, params('inbox_page', extra)],
  unread: (id, extra) => ['GET', `${BASE_URL}/v1/users/${enc(id)}/notifications/unread-count`, null, params('unread_count', extra)],
  markRead: (notificationId, userId, extra) => ['PATCH', `${BASE_URL}/v1/notifications/${enc(notificationId)}/read`, JSON.stringify({ user_id: userId }), params('mark_read', extra)],
  getPrefs: (id, extra) => ['GET', `${BASE_URL}/v1/users/${enc(id)}/preferences`, null, params('get_preferences', extra)],
  putPrefs: (id, prefs, extra) => ['PUT', `${BASE_URL}/v1/users/${enc(id)}/preferences`, JSON.stringify(prefs), params('put_preferences', extra)],
};

// call sends one request built by `req`.
export function call(r) {
  return http.request(r[0], r[1], r[2], r[3]);
}

// json answers the parsed body, or the value at a dotted path, or undefined when the body is
// not JSON (so a check can say "false" instead of the iteration throwing).
export function json(res, path) {
  try {
    return path === undefined ? res.json() : res.json(path);
  } catch (e) {
    return undefined;
  }
}

// retryAfter answers the Retry-After header in seconds, or 0 when absent or not a number.
export function retryAfter(res) {
  const v = res.headers['Retry-After'];
  const n = Number(v);
  return v !== undefined && Number.isFinite(n) ? n : 0;
}

// ---- ids and users --------------------------------------------------------------------------

// runId: one per test run, made in setup() and handed to the VUs in its data (init code runs
// once per VU, so an id made there would differ between VUs).
export function newRunId() {
  return `${Date.now().toString(36)}${Math.floor(Math.random() * 46656).toString(36)}`;
}

// userIds: n user ids of this run, `lt-<prefix>-<run>-<i>` (the API's user id pattern).
export function userIds(prefix, runId, n) {
  const ids = [];
  for (let i = 0; i < n; i++) ids.push(`lt-${prefix}-${runId}-${i}`);
  return ids;
}

// iterationId: unique per VU and iteration, for idempotency keys and ids made during the run.
export function iterationId(runId) {
  return `${runId}-${__VU}-${__ITER}-${Math.floor(Math.random() * 1e6)}`;
}

export function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

// sample answers n distinct elements of list (all of it when n >= its length).
export function sample(list, n) {
  if (n >= list.length) return list.slice();
  const out = new Set();
  while (out.size < n) out.add(list[Math.floor(Math.random() * list.length)]);
  return [...out];
}

const AMERICAS = new Set(['US', 'PR', 'VI', 'GU', 'AS', 'MP', 'UM', 'CA', 'MX', 'BR', 'AR']);

// phoneFor: an E.164 number for the country (US-style +1 555 numbers in the Americas, German
// mobile numbers elsewhere); the SMS simulator accepts any well-formed number.
export function phoneFor(country, i) {
  const n = String(i % 10000000).padStart(7, '0');
  return AMERICAS.has(country) ? `+1555${n}` : `+49151${n}0`;
}

// registerUsers registers every id through the gateway (PUT /v1/users/{id}), in batches, the
// countries assigned round robin (DE is EU, home eu-west-1; US is US, home us-east-1). With
// opts.email / opts.phone the users get an address / number, so email / SMS channels have a
// target. Answers [{id, country, home}] (home: the home region the gateway chose).
export function registerUsers(ids, opts) {
  const o = opts || {};
  const countries = o.countries && o.countries.length ? o.countries : ['DE', 'US'];
  const size = o.batchSize || envInt('REGISTER_BATCH', 50, 1);
  const users = [];
  for (let i = 0; i < ids.length; i += size) {
    const chunk = ids.slice(i, i + size);
    const bodies = chunk.map((id, j) => {
      const country = countries[(i + j) % countries.length];
      const body = { country };
      if (o.email) body.email = `${id}@example.com`;
      if (o.phone) body.phone = phoneFor(country, i + j);
      return body;
    });
    const answers = http.batch(chunk.map((id, j) => req.putUser(id, bodies[j])));
    answers.forEach((r, j) => {
      check(r, {
        'user registered (200/201)': (res) => res.status === 200 || res.status === 201,
        'registration answers its home region': (res) => typeof json(res, 'home_region') === 'string' && json(res, 'home_region') !== '',
      });
      users.push({ id: chunk[j], country: bodies[j].country, home: json(r, 'home_region') || '' });
    });
  }
  return users;
}

// subscribeAll subscribes every user id to the topic, in batches.
export function subscribeAll(topic, ids) {
  const size = envInt('REGISTER_BATCH', 50, 1);
  for (let i = 0; i < ids.length; i += size) {
    const answers = http.batch(ids.slice(i, i + size).map((id) => req.subscribe(topic, id)));
    answers.forEach((r) => {
      check(r, {
        'subscribed (200/201)': (res) => res.status === 200 || res.status === 201,
        'subscription answers subscribed: true': (res) => json(res, 'subscribed') === true,
      });
    });
  }
}

// ---- sends and the end-to-end probe ---------------------------------------------------------

// send posts a notification and checks the 202 (notification_id, parts). Answers
// {ok, res, t0, ids}: t0 is the wall-clock time just before the POST, ids every id the
// recipients' inbox items may carry (the whole send's and each region part's).
export function send(body, extra) {
  const tier = body.type;
  const t0 = Date.now();
  const res = call(req.send(body, Object.assign({ tags: { tier } }, extra || {})));
  const b = json(res);
  const ok = check(res, {
    'send accepted (202)': (r) => r.status === 202,
    'send answers notification_id and its parts': () =>
      !!b && typeof b.notification_id === 'string' && Array.isArray(b.parts) &&
      b.parts.every((p) => typeof p.region === 'string' && typeof p.notification_id === 'string'),
  });
  sendFailed.add(!ok, { tier });
  if (ok) sendsAccepted.add(1, { tier });
  const ids = ok ? [b.notification_id].concat(b.parts.map((p) => p.notification_id)) : [];
  return { ok, res, t0, ids, body: b };
}

// waitForInbox polls the inboxes of users (one http.batch per round) until each shows an item
// of the send `sent` (what send() answered), and records herald_e2e_ms{tier} per user from the
// send's t0. Users still waiting after o.timeoutS record a timeout. Answers how many users saw
// the item.
export function waitForInbox(users, sent, o) {
  const tier = o.tier;
  const t0 = sent.t0;
  const want = {};
  sent.ids.forEach((id) => {
    want[id] = true;
  });
  const deadline = t0 + o.timeoutS * 1000;
  let pending = users.slice();
  let seen = 0;
  while (pending.length) {
    const answers = http.batch(pending.map((u) => req.inbox(u, { limit: o.limit || 20 }, { tags: { tier } })));
    const now = Date.now();
    const still = [];
    answers.forEach((r, i) => {
      const items = json(r, 'items');
      const shaped = check(r, {
        'inbox read (200)': (res) => res.status === 200,
        'inbox page has items[] and next_cursor': (res) => Array.isArray(items) && json(res, 'next_cursor') !== undefined,
      });
      if (!shaped) return; // a broken answer is a failed check, not a latency sample
      if (items.some((it) => want[it.notification_id] === true)) {
        e2eLatency.add(now - t0, { tier });
        e2eTimeouts.add(false, { tier });
        seen++;
      } else {
        still.push(pending[i]);
      }
    });
    pending = still;
    if (!pending.length) break;
    if (Date.now() >= deadline) {
      pending.forEach(() => {
        e2eLatency.add(o.timeoutS * 1000, { tier });
        e2eTimeouts.add(true, { tier });
      });
      break;
    }
    sleep(o.intervalS);
  }
  return seen;
}

// e2eOptions: the probe's settings from the environment.
export function e2eOptions(tier, defTimeoutS) {
  return {
    tier,
    timeoutS: envNum('E2E_TIMEOUT', defTimeoutS, 1),
    intervalS: envNum('POLL_INTERVAL', 0.1, 0.01),
    limit: envInt('POLL_LIMIT', 20, 1),
  };
}

// ---- preferences ----------------------------------------------------------------------------

function coin() {
  return Math.random() < 0.5;
}

// randomPreferences: a valid preference document that varies what a churning user would
// (channels, per-category switches, quiet hours, time zone, channel order) but never turns off
// in-app delivery, the `keep` category, or sets hard_stop, so the probe's items still arrive.
export function randomPreferences(keep) {
  const order = ['push', 'email', 'sms', 'in_app'].sort(() => Math.random() - 0.5).slice(0, 2);
  const categories = {
    promo: { email: coin(), push: coin(), in_app: coin() },
    digest: { email: coin(), sms: coin() },
  };
  if (keep) delete categories[keep];
  const prefs = {
    channels: { in_app: true, push: coin(), email: coin(), sms: coin() },
    categories,
    timezone: pick(['Europe/Berlin', 'Europe/Paris', 'America/New_York', 'UTC']),
    channel_order: order,
    hard_stop: false,
  };
  // No quiet hours is the field left out: the API refuses null (docs/residency.md, "One reading").
  if (coin()) prefs.quiet_hours = { start: '22:00', end: '07:00' };
  return prefs;
}
