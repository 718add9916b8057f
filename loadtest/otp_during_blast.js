// OTP during a marketing blast: a steady stream of transactional one-time codes while marketing
// sends to every blast user pile up a backlog. Tier isolation (each tier its own Kafka topic,
// consumer group and concurrency) must keep the OTPs inside the transactional SLO: p99 from the
// POST to the code visible in the user's inbox under 5 s, with under 1% failed.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e API_KEY=hk_... loadtest/otp_during_blast.js
//
// Environment (defaults in brackets): OTP_RATE [20] OTPs per second; OTP_USERS [200];
// BLAST_RATE [1] blast sends per second, each to BLAST_RECIPIENTS [1000] of BLAST_USERS [5000];
// BLAST_HEAD_START [15s] blast alone before the OTPs start; DURATION [5m] of the OTP stream;
// COUNTRIES [DE,US]; OTP_CHANNELS [in_app,sms]; BLAST_CHANNELS [in_app,email]; E2E_TIMEOUT [30]
// seconds; POLL_INTERVAL [0.1] seconds; BLAST_PROBE [1] (1: also probe one blast recipient per
// blast send, reported as herald_e2e_ms{tier:marketing}, no threshold); OTP_VUS / OTP_MAX_VUS,
// BLAST_VUS / BLAST_MAX_VUS.
import { group } from 'k6';
import {
  SLO, baseOptions, envInt, envList, envDuration, seconds, newRunId, userIds, registerUsers,
  send, waitForInbox, e2eOptions, pick, iterationId,
} from './lib/herald.js';

const OTP_RATE = envInt('OTP_RATE', 20, 1);
const BLAST_RATE = envInt('BLAST_RATE', 1, 1);
const HEAD_START = envDuration('BLAST_HEAD_START', '15s');
const DURATION = envDuration('DURATION', '5m');
const E2E = e2eOptions('transactional', 30);

export const options = Object.assign(baseOptions(), {
  scenarios: {
    blast: {
      executor: 'constant-arrival-rate',
      exec: 'blast',
      rate: BLAST_RATE,
      timeUnit: '1s',
      duration: `${seconds(HEAD_START) + seconds(DURATION)}s`,
      preAllocatedVUs: envInt('BLAST_VUS', 5, 1),
      maxVUs: envInt('BLAST_MAX_VUS', 100, 1),
      tags: { tier: 'marketing' },
    },
    otp: {
      executor: 'constant-arrival-rate',
      exec: 'otp',
      startTime: HEAD_START,
      rate: OTP_RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: envInt('OTP_VUS', Math.max(10, OTP_RATE * 2), 1),
      maxVUs: envInt('OTP_MAX_VUS', Math.max(50, OTP_RATE * 10), 1),
      tags: { tier: 'transactional' },
    },
  },
  thresholds: {
    // transactional SLO: p99 accept -> delivered < 5 s, < 1% failed
    'herald_e2e_ms{tier:transactional}': [`p(99)<${SLO.transactionalP99Ms}`],
    'herald_e2e_timeouts{tier:transactional}': [`rate<${SLO.transactionalErrorRate}`],
    'herald_send_failed{tier:transactional}': [`rate<${SLO.transactionalErrorRate}`],
    // marketing has no latency target, but the gateway must keep answering it
    'herald_send_failed{tier:marketing}': [`rate<${SLO.gatewayErrorRate}`],
    http_req_failed: [`rate<${SLO.gatewayErrorRate}`],
    checks: ['rate>0.99'],
  },
});

export function setup() {
  const runId = newRunId();
  const countries = envList('COUNTRIES', 'DE,US');
  const otpUsers = registerUsers(userIds('otp', runId, envInt('OTP_USERS', 200, 1)), { countries, phone: true });
  const blastUsers = registerUsers(userIds('blast', runId, envInt('BLAST_USERS', 5000, 1)), { countries, email: true });
  return {
    runId,
    otpUsers: otpUsers.map((u) => u.id),
    blastUsers: blastUsers.map((u) => u.id),
    blastRecipients: Math.min(envInt('BLAST_RECIPIENTS', 1000, 1), 1000, blastUsers.length),
  };
}

// blast: one marketing send to BLAST_RECIPIENTS consecutive blast users (a window that moves
// with each send, so every user keeps receiving).
export function blast(data) {
  const n = data.blastRecipients;
  const start = Math.floor(Math.random() * data.blastUsers.length);
  const recipients = [];
  for (let i = 0; i < n; i++) recipients.push(data.blastUsers[(start + i) % data.blastUsers.length]);
  group('marketing blast', () => {
    const s = send({
      type: 'marketing',
      category: 'promo',
      title: 'Weekend sale',
      body: 'Everything 20% off until Sunday',
      link: 'https://example.com/sale',
      recipients,
      channels: envList('BLAST_CHANNELS', 'in_app,email'),
    });
    if (s.ok && envInt('BLAST_PROBE', 1) === 1) {
      waitForInbox([recipients[0]], s, Object.assign({}, E2E, { tier: 'marketing', timeoutS: E2E.timeoutS * 2 }));
    }
  });
}

// otp: one transactional code to a random OTP user, then wait for it in the inbox.
export function otp(data) {
  const user = pick(data.otpUsers);
  group('otp', () => {
    const code = String(Math.floor(Math.random() * 1e6)).padStart(6, '0');
    const s = send({
      type: 'transactional',
      category: 'otp',
      title: 'Your sign-in code',
      body: `Your code is ${code}`,
      recipients: [user],
      channels: envList('OTP_CHANNELS', 'in_app,sms'),
      idempotency_key: `otp-${iterationId(data.runId)}`,
    });
    if (s.ok) waitForInbox([user], s, E2E);
  });
}
