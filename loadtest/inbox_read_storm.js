// Inbox read storm: many clients open their inbox at once (the app start after a push, say).
// READERS users get SEED_ITEMS items each in setup; then VUs ramp up to VUS, each iteration one
// user opening the app: the first inbox page and the unread count together (http.batch), up to
// PAGES pages following next_cursor, sometimes marking the newest item read. Meanwhile a
// writer keeps sending new social items and follows one into an inbox, so the storm is judged
// on both sides: reads p99 under 250 ms at the gateway (the floor `herald-dev loadtest` uses), new
// items still inside the social SLO (p99 < 30 s), under 1% failed requests.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e API_KEY=hk_... loadtest/inbox_read_storm.js
//
// Environment (defaults in brackets): READERS [1000]; SEED_ITEMS [30] items per reader;
// SEED_WAIT [120] seconds to wait for the seed to show; VUS [300]; RAMP [30s]; DURATION [3m] at
// VUS; PAGES [3]; PAGE_LIMIT [20]; MARK_READ_RATIO [0.1]; THINK_TIME [1] seconds between a
// user's iterations; WRITE_RATE [2] sends per second, each to WRITE_RECIPIENTS [20] readers;
// COUNTRIES [DE,US]; E2E_TIMEOUT [60]; POLL_INTERVAL [0.1].
import http from 'k6/http';
import { check, group, sleep } from 'k6';
import {
  SLO, baseOptions, envInt, envNum, envList, envDuration, newRunId, userIds, registerUsers,
  send, waitForInbox, e2eOptions, pick, sample, req, call, json,
} from './lib/herald.js';

const VUS = envInt('VUS', 300, 1);
const E2E = e2eOptions('social', 60);

export const options = Object.assign(baseOptions(), {
  scenarios: {
    readers: {
      executor: 'ramping-vus',
      exec: 'read',
      startVUs: 0,
      stages: [
        { duration: envDuration('RAMP', '30s'), target: VUS },
        { duration: envDuration('DURATION', '3m'), target: VUS },
        { duration: '10s', target: 0 },
      ],
      gracefulRampDown: '10s',
    },
    writers: {
      executor: 'constant-arrival-rate',
      exec: 'write',
      rate: envInt('WRITE_RATE', 2, 1),
      timeUnit: '1s',
      duration: envDuration('DURATION', '3m'),
      startTime: envDuration('RAMP', '30s'),
      preAllocatedVUs: 5,
      maxVUs: 100,
      tags: { tier: 'social' },
    },
  },
  thresholds: {
    'http_req_duration{scenario:readers,name:inbox_page}': [`p(99)<${SLO.inboxReadP99Ms}`],
    'http_req_duration{scenario:readers,name:unread_count}': [`p(99)<${SLO.inboxReadP99Ms}`],
    'http_req_failed{scenario:readers}': [`rate<${SLO.gatewayErrorRate}`],
    http_req_failed: [`rate<${SLO.gatewayErrorRate}`],
    'herald_e2e_ms{tier:social}': [`p(99)<${SLO.socialP99Ms}`],
    'herald_e2e_timeouts{tier:social}': [`rate<${SLO.socialErrorRate}`],
    checks: ['rate>0.99'],
  },
});

export function setup() {
  const runId = newRunId();
  const readers = registerUsers(userIds('reader', runId, envInt('READERS', 1000, 1)), {
    countries: envList('COUNTRIES', 'DE,US'),
  }).map((u) => u.id);
  // Seed every inbox: SEED_ITEMS sends to all readers, at most 1000 recipients per send.
  const items = envInt('SEED_ITEMS', 30, 1);
  let last = null;
  for (let i = 0; i < items; i++) {
    for (let j = 0; j < readers.length; j += 1000) {
      const s = send({
        type: 'social',
        category: 'digest',
        title: `Seed item ${i + 1}`,
        body: 'Something happened in a group you follow',
        recipients: readers.slice(j, j + 1000),
        channels: ['in_app'],
      });
      if (s.ok) last = s;
    }
  }
  // Wait until the last seed send shows in one inbox, so the storm reads full inboxes.
  if (last) waitForInbox([readers[0]], last, Object.assign({}, E2E, { timeoutS: envNum('SEED_WAIT', 120, 1) }));
  return { runId, readers };
}

// read: one user opening the app.
export function read(data) {
  const user = pick(data.readers);
  const limit = envInt('PAGE_LIMIT', 20, 1);
  group('open inbox', () => {
    const answers = http.batch([req.inbox(user, { limit }), req.unread(user)]);
    const page = answers[0];
    const unread = answers[1];
    check(page, {
      'inbox read (200)': (r) => r.status === 200,
      'inbox page has items[] and next_cursor': (r) => Array.isArray(json(r, 'items')) && json(r, 'next_cursor') !== undefined,
      'inbox items are the user\'s': (r) => (json(r, 'items') || []).every((it) => it.user_id === user || it.topic),
    });
    check(unread, {
      'unread count (200)': (r) => r.status === 200,
      'unread count is 0..1000 with more': (r) => {
        const n = json(r, 'unread_count');
        return Number.isInteger(n) && n >= 0 && n <= 1000 && typeof json(r, 'more') === 'boolean';
      },
    });
    let cursor = json(page, 'next_cursor');
    for (let p = 1; p < envInt('PAGES', 3, 1) && cursor; p++) {
      const next = call(req.inbox(user, { limit, cursor }));
      check(next, { 'next inbox page (200)': (r) => r.status === 200 && Array.isArray(json(r, 'items')) });
      cursor = json(next, 'next_cursor');
    }
    const newest = (json(page, 'items') || [])[0];
    if (newest && Math.random() < envNum('MARK_READ_RATIO', 0.1, 0)) {
      const marked = call(req.markRead(newest.notification_id, user));
      check(marked, {
        'mark read (200)': (r) => r.status === 200,
        'mark read answers read: true': (r) => json(r, 'read') === true && json(r, 'notification_id') === newest.notification_id,
      });
    }
  });
  sleep(envNum('THINK_TIME', 1, 0));
}

// write: new items arriving during the storm, one followed into its inbox.
export function write(data) {
  const recipients = sample(data.readers, envInt('WRITE_RECIPIENTS', 20, 1));
  group('new item', () => {
    const s = send({
      type: 'social',
      category: 'mention',
      title: 'You were mentioned',
      body: 'Someone mentioned you in a comment',
      recipients,
      channels: ['in_app'],
    });
    if (s.ok) waitForInbox([recipients[0]], s, E2E);
  });
}
