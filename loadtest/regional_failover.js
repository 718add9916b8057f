// Regional failover during load. The script cannot stop a region: it drives EU and US traffic
// while the OPERATOR stops eu-west-1 (the EU home region) during the run and starts it again
// (loadtest/README.md, "Failover"). What it checks, for every answer, whatever the regions'
// health at that moment:
//
//   - an EU user's request succeeds (served by an EU region: eu-west-1, or eu-central-1 during
//     the failover) or is refused 503 with Retry-After (no EU region healthy: nothing was sent
//     anywhere else);
//   - never a wrong-jurisdiction answer: no EU user served by, and no send part placed in, a
//     region of another jurisdiction (herald_wrong_jurisdiction must stay 0);
//   - US users are not disturbed: their requests keep succeeding.
//
// A region_watch scenario reads GET /v1/regions every second and records each region's health
// (herald_region_healthy{region}), so the summary shows that the failover did happen.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e API_KEY=hk_... loadtest/regional_failover.js
//
// Environment (defaults in brackets): EU_USERS [200] (countries EU_COUNTRIES [DE,FR,NL]);
// US_USERS [50]; RATE [20] EU iterations per second (a GET of the user and a transactional
// in-app send, batched); US_RATE [5]; DURATION [5m]; VUS [20] / MAX_VUS [200].
import http from 'k6/http';
import { check, group } from 'k6';
import { Rate, Counter, Gauge } from 'k6/metrics';
import {
  SLO, baseOptions, envInt, envList, envDuration, newRunId, userIds, registerUsers, req, call,
  json, retryAfter, pick, iterationId,
} from './lib/herald.js';

const RATE = envInt('RATE', 20, 1);
const DURATION = envDuration('DURATION', '5m');

// herald_wrong_jurisdiction: share of EU answers served by / placed in a non-EU region.
const wrongJurisdiction = new Rate('herald_wrong_jurisdiction');
// herald_failover_served: share of successful EU answers served by a region other than the
// user's home (the failover at work).
const failoverServed = new Rate('herald_failover_served');
// herald_eu_refused: share of EU requests refused 503 (no EU region healthy).
const euRefused = new Rate('herald_eu_refused');
// herald_refused_without_retry_after: 503s that do not say when to retry.
const noRetryAfter = new Counter('herald_refused_without_retry_after');
// herald_region_healthy{region}: 1 healthy / 0 not, as the gateway sees it.
const regionHealthy = new Gauge('herald_region_healthy');

// EU answers may be 503 (refused with Retry-After): expected, so not in http_req_failed.
const EU_EXPECTED = http.expectedStatuses({ min: 200, max: 399 }, 503);

export const options = Object.assign(baseOptions(), {
  scenarios: {
    eu_traffic: {
      executor: 'constant-arrival-rate',
      exec: 'euTraffic',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: envInt('VUS', 20, 1),
      maxVUs: envInt('MAX_VUS', 200, 1),
      tags: { jurisdiction: 'EU' },
    },
    us_traffic: {
      executor: 'constant-arrival-rate',
      exec: 'usTraffic',
      rate: envInt('US_RATE', 5, 1),
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 5,
      maxVUs: 50,
      tags: { jurisdiction: 'US' },
    },
    region_watch: {
      executor: 'constant-arrival-rate',
      exec: 'watchRegions',
      rate: 1,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 1,
      maxVUs: 5,
    },
  },
  thresholds: {
    herald_wrong_jurisdiction: ['rate==0'],
    herald_refused_without_retry_after: ['count==0'],
    // failed requests other than the EU 503s the policy allows
    http_req_failed: [`rate<${SLO.gatewayErrorRate}`],
    'http_req_failed{scenario:us_traffic}': [`rate<${SLO.gatewayErrorRate}`],
    checks: ['rate>0.99'],
  },
});

// regionsByJurisdiction reads GET /v1/regions: {jurisdiction: [region, ...]}.
function regionsByJurisdiction() {
  const res = call(req.regions());
  check(res, {
    'regions (200)': (r) => r.status === 200,
    'regions name their jurisdiction': (r) => Array.isArray(json(r, 'regions')) && json(r, 'regions').every((g) => g.region && g.jurisdiction),
  });
  const out = {};
  (json(res, 'regions') || []).forEach((g) => {
    (out[g.jurisdiction] = out[g.jurisdiction] || []).push(g.region);
  });
  return out;
}

export function setup() {
  const runId = newRunId();
  const regions = regionsByJurisdiction();
  const eu = registerUsers(userIds('fo-eu', runId, envInt('EU_USERS', 200, 1)), { countries: envList('EU_COUNTRIES', 'DE,FR,NL') });
  const us = registerUsers(userIds('fo-us', runId, envInt('US_USERS', 50, 1)), { countries: ['US'] });
  check(eu, { 'EU users have an EU home': (list) => list.every((u) => (regions.EU || []).indexOf(u.home) >= 0) });
  check(us, { 'US users have a US home': (list) => list.every((u) => (regions.US || []).indexOf(u.home) >= 0) });
  return { runId, regions, eu, us };
}

// judge checks one answer for a user of jurisdiction j: success served in j, or (when
// allowRefusal) 503 with Retry-After. servedBy lists the regions the answer names.
function judge(res, j, user, servedBy, data, allowRefusal) {
  const own = data.regions[j] || [];
  const wrong = servedBy.some((r) => own.indexOf(r) < 0);
  wrongJurisdiction.add(wrong, { jurisdiction: j });
  const ok = res.status >= 200 && res.status < 300;
  const refused = res.status === 503;
  if (refused && retryAfter(res) <= 0) noRetryAfter.add(1, { jurisdiction: j });
  if (allowRefusal) euRefused.add(refused);
  if (ok && servedBy.length) failoverServed.add(servedBy.some((r) => r !== user.home), { jurisdiction: j });
  const checks = {};
  checks[`${j} answer is a success${allowRefusal ? ' or 503 with Retry-After' : ''}`] = () => ok || (allowRefusal && refused && retryAfter(res) > 0);
  checks[`${j} answer stays in ${j}`] = () => !wrong;
  if (allowRefusal) {
    checks[`${j} refusal says region_unavailable`] = () => !refused || ['region_unavailable', 'partially_accepted', 'deadline_exceeded'].indexOf(json(res, 'error.code')) >= 0;
  }
  check(res, checks, { jurisdiction: j });
}

function traffic(data, j, users, allowRefusal) {
  const user = pick(users);
  const extra = allowRefusal ? { responseCallback: EU_EXPECTED, tags: { jurisdiction: j } } : { tags: { jurisdiction: j } };
  group(`${j} user`, () => {
    const answers = http.batch([
      req.getUser(user.id, extra),
      req.send({
        type: 'transactional',
        category: 'security',
        body: 'A new device signed in to your account',
        recipients: [user.id],
        channels: ['in_app'],
        idempotency_key: `fo-${iterationId(data.runId)}`,
      }, extra),
    ]);
    const got = answers[0];
    const sent = answers[1];
    judge(got, j, user, got.status === 200 ? [json(got, 'served_by') || ''] : [], data, allowRefusal);
    const parts = sent.status === 202 ? json(sent, 'parts') || [] : [];
    judge(sent, j, user, parts.map((p) => p.region), data, allowRefusal);
    check(sent, { 'accepted send lists its parts': (r) => r.status !== 202 || parts.length > 0 });
  });
}

export function euTraffic(data) {
  traffic(data, 'EU', data.eu, true);
}

export function usTraffic(data) {
  traffic(data, 'US', data.us, false);
}

export function watchRegions() {
  const res = call(req.regions());
  check(res, { 'regions (200)': (r) => r.status === 200 });
  (json(res, 'regions') || []).forEach((g) => regionHealthy.add(g.healthy ? 1 : 0, { region: g.region }));
}
