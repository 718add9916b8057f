// The stand-in itself, against a fake server (no Herald needed): the k6 calls behave as in k6,
// options are refused where k6 would refuse them, and failures make the check exit 1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateOptions } from '../runtime/options.mjs';
import { evaluate, aggregate } from '../runtime/thresholds.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const checkJs = path.join(here, '..', 'check.mjs');
let server;
let base;

before(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const u = new URL(req.url, 'http://x');
      const send = (status, obj, headers = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', 'x-echo-header': 'yes', ...headers });
        res.end(JSON.stringify(obj));
      };
      const echo = { method: req.method, path: u.pathname, query: Object.fromEntries(u.searchParams), headers: req.headers, body };
      if (u.pathname === '/slow') return setTimeout(() => send(200, echo), 300);
      if (u.pathname === '/unavailable') return send(503, { error: { code: 'region_unavailable' } }, { 'retry-after': '3' });
      if (u.pathname === '/fail') return send(500, { error: { code: 'boom' } });
      return send(200, echo);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}`;
});
after(() => server.close());

function runCheck(args) {
  // async spawn would be nicer, but the fake server lives in this process: spawnSync blocks
  // this event loop, so the check runs in a child that we wait for without blocking.
  return new Promise((resolve) => {
    import('node:child_process').then(({ spawn }) => {
      const c = spawn(process.execPath, [checkJs, '--base-url', base, '--env', 'API_KEY=unused', ...args], { env: { ...process.env, API_KEY: 'unused' } });
      let out = '';
      c.stdout.on('data', (d) => (out += d));
      c.stderr.on('data', (d) => (out += d));
      c.on('close', (status) => resolve({ status, out }));
    });
  });
}

test('the stand-in answers as k6 does (contract fixture passes)', async () => {
  const r = await runCheck(['--iterations', '1', '--verbose', path.join(here, '..', 'fixtures', 'stand_in_contract.js')]);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /PASS/);
  assert.match(r.out, /"batch runs in parallel": 1 passed/);
  assert.doesNotMatch(r.out, /crossed/);
});

test('an unexpected 500, a failed check and a throw each fail the check, named', async () => {
  const r = await runCheck(['--iterations', '1', '--env', 'THROW=1', path.join(here, '..', 'fixtures', 'stand_in_failures.js')]);
  assert.equal(r.status, 1, r.out);
  assert.match(r.out, /FAIL .*stand_in_failures\.js/);
  assert.match(r.out, /GET fail: unexpected 500/);
  assert.match(r.out, /check "a check that cannot hold" failed 1 of 1/);
  assert.match(r.out, /default\(\) threw: Error: thrown by the script/);
});

test('--expect-fail passes only when the script fails with that text', async () => {
  const f = path.join(here, '..', 'fixtures', 'stand_in_failures.js');
  assert.equal((await runCheck(['--iterations', '1', '--expect-fail', 'unexpected 500', f])).status, 0);
  assert.equal((await runCheck(['--iterations', '1', '--expect-fail', 'no such failure', f])).status, 1);
});

test('a script that fails to load, or imports a k6 module without a stand-in, fails', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'k6-stand-in-'));
  try {
    const s = path.join(dir, 'ws.js');
    writeFileSync(s, "import ws from 'k6/ws';\nexport const options = { thresholds: { checks: ['rate>0.9'] } };\nexport default function () {}\n");
    const r = await runCheck([s]);
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /k6\/ws: the Node check has no stand-in/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const fn = () => {};
const metrics = new Map([['herald_e2e_ms', { type: 'trend', samples: [] }]]);

test('options are refused where k6 would refuse them', () => {
  const errs = validateOptions({
    scenarios: {
      a: { executor: 'constant-arrival-rate', rate: 1.5, duration: '1m', preAllocatedVUs: 1, exec: 'nope' },
      b: { executor: 'ramping-vus', stages: [{ duration: '10x', target: 1 }], preallocatedVUs: 2 },
      c: { executor: 'constant-vus' },
      d: { executor: 'warp-speed' },
    },
    thresholds: {
      herald_e2e_ms: ['rate<0.1'],
      herald_e2e_latency: ['p(99)<1'],
      'checks{': ['rate>0.9'],
      http_req_failed: ['rate less than 1'],
    },
    tresholds: {},
  }, { default: fn }, metrics);
  const all = errs.join('\n');
  for (const want of [
    'options.scenarios.a.rate: 1.5 must be a non-negative integer',
    'options.scenarios.a.exec: "nope" is not a function the script exports',
    'options.scenarios.b.preallocatedVUs: unknown field for ramping-vus',
    'options.scenarios.b.stages[0].duration: "10x" is not a duration',
    'options.scenarios.c.duration: required by constant-vus',
    'options.scenarios.d.executor: "warp-speed" is not a k6 executor',
    'rate is not an aggregation of a trend',
    'no metric named herald_e2e_latency',
    'options.thresholds["checks{"]',
    '"rate less than 1" is not "<aggregation> <op> <number>"',
    'options.tresholds: not a k6 option',
  ]) assert.ok(all.includes(want), `missing: ${want}\nin:\n${all}`);
  assert.deepEqual(validateOptions({ thresholds: { 'herald_e2e_ms{tier:social}': ['p(99)<30000', 'avg<1'] } }, { default: fn }, metrics), []);
  assert.match(validateOptions({ scenarios: { a: { executor: 'shared-iterations' } } }, { default: fn }, metrics).join(), /thresholds: missing/);
});

test('thresholds are evaluated on sub-metrics as k6 does', () => {
  const m = new Map([
    ['t', { type: 'trend', samples: [1, 2, 3, 4, 100].map((v) => ({ value: v, tags: { tier: 'a' } })).concat([{ value: 1e6, tags: { tier: 'b' } }]) }],
    ['r', { type: 'rate', samples: [1, 0, 0, 0].map((v) => ({ value: v, tags: {} })) }],
  ]);
  const rows = evaluate({ 't{tier:a}': ['p(50)<4', 'max<=100', 'p(99)<50'], r: ['rate<0.3', 'rate<0.2'], 'r{x:y}': ['rate<1'] }, m, 1);
  assert.deepEqual(rows.map((x) => x.ok), [true, true, false, true, false, null]);
  assert.equal(aggregate('trend', [1, 2, 3, 4], 'p(50)', 1), 2.5);
  assert.equal(aggregate('counter', [2, 3], 'rate', 10), 0.5);
});
