// The check can fail: each real script, copied to a temporary directory with ONE defect put in
// (a request shape broken, a path wrong, a threshold on a metric that does not exist, an exec
// naming no function, a check that cannot hold), must fail the check against the live gateway,
// with a message naming what broke; the unmodified copy must pass. Needs a running gateway
// ($BASE_URL, default http://127.0.0.1:8080) and an API key ($API_KEY or
// .herald/loadtest-api-key); skipped without them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync, rmSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const loadtest = path.resolve(here, '..', '..');
const keyFile = path.resolve(loadtest, '..', '.herald', 'loadtest-api-key');
const base = process.env.BASE_URL || 'http://127.0.0.1:8080';
const apiKey = process.env.API_KEY || (existsSync(keyFile) ? readFileSync(keyFile, 'utf8').trim() : '');

async function gatewayReady() {
  try {
    return (await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) })).ok;
  } catch {
    return false;
  }
}
const skip = !apiKey ? 'no API key' : !(await gatewayReady()) ? `no gateway at ${base}` : false;

// copy answers a temporary copy of the scripts and lib/ with `from` replaced by `to` in `file`.
function copy(file, from, to) {
  const dir = mkdtempSync(path.join(tmpdir(), 'herald-k6-sabotage-'));
  for (const f of readdirSync(loadtest).filter((x) => x.endsWith('.js'))) cpSync(path.join(loadtest, f), path.join(dir, f));
  cpSync(path.join(loadtest, 'lib'), path.join(dir, 'lib'), { recursive: true });
  if (file) {
    const p = path.join(dir, file);
    const text = readFileSync(p, 'utf8');
    assert.ok(text.includes(from), `${file} no longer contains ${JSON.stringify(from)}: update this test`);
    writeFileSync(p, text.replace(from, to));
  }
  return dir;
}

function check(script) {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [path.join(here, '..', 'check.mjs'), '--base-url', base, '--iterations', '1', script], {
      env: { ...process.env, API_KEY: apiKey },
    });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (out += d));
    c.on('close', (status) => resolve({ status, out }));
  });
}

const CASES = [
  {
    what: 'a misspelt send field (recipient for recipients)',
    file: 'otp_during_blast.js', from: '      recipients: [user],', to: '      recipient: [user],',
    script: 'otp_during_blast.js',
    want: ['check "send accepted (202)"', 'POST send: unexpected 400', 'unknown_field'],
  },
  {
    what: 'a wrong inbox path in the shared module',
    file: 'lib/herald.js', from: '/notifications${query(q)}', to: '/inbox${query(q)}',
    script: 'social_fanout.js',
    want: ['check "inbox read (200)"', 'GET inbox_page: unexpected 404'],
  },
  {
    what: 'a JSON body sent as an object (k6 form-encodes it)',
    file: 'lib/herald.js', from: '/preferences`, JSON.stringify(prefs),', to: '/preferences`, prefs,',
    script: 'preference_churn.js',
    want: ['check "preferences written (200)"', 'PUT put_preferences: unexpected 400'],
  },
  {
    what: 'the API key left out of the headers',
    file: 'lib/herald.js', from: 'Authorization: `Bearer ${API_KEY}`,', to: '',
    script: 'inbox_read_storm.js',
    want: ['check "user registered (200/201)"', 'unexpected 401'],
  },
  {
    what: 'a threshold on a metric that does not exist',
    file: 'social_fanout.js', from: "'herald_e2e_ms{tier:social}'", to: "'herald_e2e_latency{tier:social}'",
    script: 'social_fanout.js',
    want: ['no metric named herald_e2e_latency'],
  },
  {
    what: 'a scenario exec naming no function',
    file: 'regional_failover.js', from: "exec: 'usTraffic'", to: "exec: 'usTrafic'",
    script: 'regional_failover.js',
    want: ['options.scenarios.us_traffic.exec: "usTrafic" is not a function the script exports'],
  },
  {
    what: 'a wrong-jurisdiction verdict (EU users judged against US regions)',
    file: 'regional_failover.js', from: "traffic(data, 'EU', data.eu, true);", to: "traffic(data, 'US', data.eu, true);",
    script: 'regional_failover.js',
    want: ['check "US answer stays in US"'],
  },
];

test('the unmodified scripts pass (baseline for the cases below)', { skip }, async () => {
  const dir = copy(null);
  try {
    for (const s of ['otp_during_blast.js', 'regional_failover.js']) {
      const r = await check(path.join(dir, s));
      assert.equal(r.status, 0, r.out);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const c of CASES) {
  test(`fails on ${c.what}`, { skip }, async () => {
    const dir = copy(c.file, c.from, c.to);
    try {
      const r = await check(path.join(dir, c.script));
      assert.equal(r.status, 1, `expected the check to fail:\n${r.out}`);
      assert.match(r.out, new RegExp(`FAIL .*${c.script.replace('.', '\\.')}`));
      for (const w of c.want) assert.ok(r.out.includes(w), `missing ${JSON.stringify(w)} in:\n${r.out}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
