// Preference churn while sending: users keep rewriting their preferences (channels, categories,
// quiet hours, time zone) while transactional notifications are sent to the same users. Fan-out
// reads preferences for every recipient chunk, so the churn must neither slow delivery nor break
// it: transactional p99 from the POST to the inbox under 5 s and under 1% failed; preference
// writes p99 under 1 s (the floor `herald-dev loadtest` uses), each write read back as written.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e API_KEY=hk_... loadtest/preference_churn.js
//
// Environment (defaults in brackets): USERS [500]; CHURN_RATE [50] preference rewrites per
// second; SEND_RATE [20] sends per second, each to one churning user; DURATION [3m];
// COUNTRIES [DE,US]; E2E_TIMEOUT [30]; POLL_INTERVAL [0.1]; CHURN_VUS / SEND_VUS.
//
// The churn never turns off in-app delivery nor the `security` category the sends use, and
// never sets hard_stop: what it changes is what fan-out must read, not whether the probe's item
// arrives. Transactional sends ignore quiet hours.
import { check, group } from 'k6';
import {
  SLO, baseOptions, envInt, envList, envDuration, newRunId, userIds, registerUsers, send,
  waitForInbox, e2eOptions, pick, randomPreferences, req, call, json,
} from './lib/herald.js';

const CHURN_RATE = envInt('CHURN_RATE', 50, 1);
const SEND_RATE = envInt('SEND_RATE', 20, 1);
const DURATION = envDuration('DURATION', '3m');
const E2E = e2eOptions('transactional', 30);

export const options = Object.assign(baseOptions(), {
  scenarios: {
    churn: {
      executor: 'constant-arrival-rate',
      exec: 'churn',
      rate: CHURN_RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: envInt('CHURN_VUS', Math.max(5, Math.ceil(CHURN_RATE / 5)), 1),
      maxVUs: Math.max(50, CHURN_RATE * 2),
    },
    sends: {
      executor: 'constant-arrival-rate',
      exec: 'sendWhileChurning',
      rate: SEND_RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: envInt('SEND_VUS', Math.max(10, SEND_RATE * 2), 1),
      maxVUs: Math.max(50, SEND_RATE * 10),
      tags: { tier: 'transactional' },
    },
  },
  thresholds: {
    'herald_e2e_ms{tier:transactional}': [`p(99)<${SLO.transactionalP99Ms}`],
    'herald_e2e_timeouts{tier:transactional}': [`rate<${SLO.transactionalErrorRate}`],
    'herald_send_failed{tier:transactional}': [`rate<${SLO.transactionalErrorRate}`],
    'http_req_duration{scenario:churn,name:put_preferences}': [`p(99)<${SLO.prefsWriteP99Ms}`],
    http_req_failed: [`rate<${SLO.gatewayErrorRate}`],
    checks: ['rate>0.99'],
  },
});

export function setup() {
  const runId = newRunId();
  const users = registerUsers(userIds('prefs', runId, envInt('USERS', 500, 1)), {
    countries: envList('COUNTRIES', 'DE,US'),
    email: true,
    phone: true,
  });
  return { runId, users: users.map((u) => u.id) };
}

// same: the answer holds what was written (the fields the request set).
function same(written, answer) {
  if (!answer) return false;
  for (const ch of Object.keys(written.channels)) {
    if (!answer.channels || answer.channels[ch] !== written.channels[ch]) return false;
  }
  for (const cat of Object.keys(written.categories)) {
    for (const ch of Object.keys(written.categories[cat])) {
      const got = answer.categories && answer.categories[cat] ? answer.categories[cat][ch] : true;
      if (got !== written.categories[cat][ch]) return false;
    }
  }
  const q = written.quiet_hours;
  const aq = answer.quiet_hours || null;
  if (q ? !aq || aq.start !== q.start || aq.end !== q.end : aq) return false;
  return answer.hard_stop === false && (answer.timezone || 'UTC') === written.timezone &&
    JSON.stringify(answer.channel_order || []) === JSON.stringify(written.channel_order);
}

// churn: read a user's preferences, write new ones, check the answer is what was written.
export function churn(data) {
  const user = pick(data.users);
  group('preference churn', () => {
    const before = call(req.getPrefs(user));
    check(before, {
      'preferences read (200)': (r) => r.status === 200,
      'preferences answer hard_stop': (r) => typeof json(r, 'hard_stop') === 'boolean',
    });
    const prefs = randomPreferences('security');
    const written = call(req.putPrefs(user, prefs));
    check(written, {
      'preferences written (200)': (r) => r.status === 200,
      'preferences answer what was written': (r) => same(prefs, json(r)),
    });
  });
}

// sendWhileChurning: a transactional send to a churning user, followed into the inbox.
export function sendWhileChurning(data) {
  const user = pick(data.users);
  group('send while churning', () => {
    const s = send({
      type: 'transactional',
      category: 'security',
      title: 'New sign-in',
      body: 'A new device signed in to your account',
      recipients: [user],
    });
    if (s.ok) waitForInbox([user], s, E2E);
  });
}
