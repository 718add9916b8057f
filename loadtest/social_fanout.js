// Social fan-out to a large topic: SUBSCRIBERS users subscribe to one topic (above the region's
// fan-out-on-read threshold, 10,000 per region by default, the topic is written once as a feed
// and merged into inboxes at read time), then social sends to the topic arrive at a steady
// rate. Each send is followed into the inboxes of SAMPLE_USERS random subscribers, polled with
// http.batch; the social SLO is p99 from the POST to the item in the inbox under 30 s, with
// under 5% failed.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e API_KEY=hk_... loadtest/social_fanout.js
//
// Environment (defaults in brackets): SUBSCRIBERS [25000] users subscribed to the topic, the
// countries round robin from COUNTRIES [DE,US] (so 12,500 per region: both above the threshold);
// SENDS_PER_MIN [6]; DURATION [5m]; SAMPLE_USERS [5] subscribers probed per send; TOPIC
// [lt-social-<run id>]; CHANNELS [in_app]; E2E_TIMEOUT [60] seconds; POLL_INTERVAL [0.1];
// VUS [10] / MAX_VUS [60].
import { check, group } from 'k6';
import {
  SLO, baseOptions, envInt, envStr, envList, envDuration, newRunId, userIds, registerUsers,
  subscribeAll, send, waitForInbox, e2eOptions, sample, call, req, json,
} from './lib/herald.js';

const E2E = e2eOptions('social', 60);

export const options = Object.assign(baseOptions(), {
  scenarios: {
    fanout: {
      executor: 'constant-arrival-rate',
      exec: 'sendToTopic',
      rate: envInt('SENDS_PER_MIN', 6, 1),
      timeUnit: '1m',
      duration: envDuration('DURATION', '5m'),
      preAllocatedVUs: envInt('VUS', 10, 1),
      maxVUs: envInt('MAX_VUS', 60, 1),
      tags: { tier: 'social' },
    },
  },
  thresholds: {
    // social SLO: p99 accept -> delivered < 30 s, < 5% failed
    'herald_e2e_ms{tier:social}': [`p(99)<${SLO.socialP99Ms}`],
    'herald_e2e_timeouts{tier:social}': [`rate<${SLO.socialErrorRate}`],
    'herald_send_failed{tier:social}': [`rate<${SLO.socialErrorRate}`],
    http_req_failed: [`rate<${SLO.gatewayErrorRate}`],
    checks: ['rate>0.99'],
  },
});

export function setup() {
  const runId = newRunId();
  const topic = envStr('TOPIC', `lt-social-${runId}`);
  const n = envInt('SUBSCRIBERS', 25000, 1);
  const users = registerUsers(userIds('social', runId, n), { countries: envList('COUNTRIES', 'DE,US') });
  const ids = users.map((u) => u.id);
  subscribeAll(topic, ids);
  // The gateway sums the topic over the regions: every subscription must be counted.
  const info = call(req.topic(topic));
  check(info, {
    'topic info (200)': (r) => r.status === 200,
    'topic counts every subscriber': (r) => json(r, 'subscribers') >= n,
  });
  return { runId, topic, subscribers: ids };
}

export function sendToTopic(data) {
  group('topic send', () => {
    const s = send({
      type: 'social',
      category: 'comment',
      title: 'New reply',
      body: `Someone replied in ${data.topic}`,
      link: `myapp://topics/${data.topic}`,
      topic: data.topic,
      channels: envList('CHANNELS', 'in_app'),
    });
    check(s.res, {
      'topic send reaches a region with subscribers': () => !s.ok || s.body.parts.length > 0,
    });
    if (s.ok) waitForInbox(sample(data.subscribers, envInt('SAMPLE_USERS', 5, 1)), s, E2E);
  });
}
