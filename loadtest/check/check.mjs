#!/usr/bin/env node
// The Node check of Herald's k6 scripts (k6 itself cannot be installed here). For each script
// (default: every loadtest/*.js), in its own Node process: load it with the k6 modules mapped
// to the stand-ins in ./k6/, check `options` as k6 would (scenarios, executors, thresholds on
// known metrics), run setup(), each scenario's exec function for a few iterations against a
// live gateway, teardown(); fail when a check() fails, a request gets an answer its response
// callback does not expect (by default anything outside 200-399), or the script throws.
//
//   node check.mjs [--base-url URL] [--api-key-file F] [--iterations N] [--env K=V ...]
//                  [--strict-thresholds] [--expect-fail TEXT] [--timeout S] [--verbose] [script.js ...]
//
// API key: --api-key-file, else $API_KEY. Counts default to small values (SMALL_ENV below) so a
// check costs seconds; --env overrides any of them. Thresholds are evaluated and printed, and
// fail the check only with --strict-thresholds: a few iterations on a shared machine say
// nothing about a p99. --expect-fail TEXT inverts the verdict for one script: it passes only if
// the script fails with TEXT in a failure message (how the check proves it can fail).
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const loadtestDir = path.resolve(here, '..');

// Small counts for every knob the scripts read, so each runs in seconds against the local stack.
export const SMALL_ENV = {
  OTP_USERS: '3',
  OTP_RATE: '1',
  BLAST_USERS: '4',
  BLAST_RECIPIENTS: '4',
  SUBSCRIBERS: '4',
  SAMPLE_USERS: '2',
  READERS: '3',
  SEED_ITEMS: '2',
  SEED_WAIT: '15',
  PAGES: '2',
  PAGE_LIMIT: '1',
  USERS: '3',
  EU_USERS: '3',
  US_USERS: '2',
  THINK_TIME: '0.05',
  MARK_READ_RATIO: '1',
  E2E_TIMEOUT: '20',
  POLL_INTERVAL: '0.2',
  REGISTER_BATCH: '10',
};

function usage(msg) {
  if (msg) console.error(`check: ${msg}`);
  console.error('usage: node check.mjs [--base-url URL] [--api-key-file F] [--iterations N] [--env K=V ...] [--strict-thresholds] [--expect-fail TEXT] [--timeout S] [--verbose] [script.js ...]');
  process.exit(2);
}

const args = process.argv.slice(2);
const opt = {
  baseUrl: process.env.BASE_URL || 'http://127.0.0.1:8080',
  apiKey: process.env.API_KEY || '',
  iterations: 2,
  env: {},
  strict: false,
  expectFail: null,
  timeout: 300,
  scripts: [],
};
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const val = () => {
    if (i + 1 >= args.length) usage(`${a} needs a value`);
    return args[++i];
  };
  if (a === '--base-url') opt.baseUrl = val();
  else if (a === '--api-key-file') opt.apiKey = readFileSync(val(), 'utf8').trim();
  else if (a === '--iterations') opt.iterations = Number(val());
  else if (a === '--env') {
    const kv = val();
    const j = kv.indexOf('=');
    if (j <= 0) usage(`--env ${kv}: K=V`);
    opt.env[kv.slice(0, j)] = kv.slice(j + 1);
  } else if (a === '--strict-thresholds') opt.strict = true;
  else if (a === '--verbose' || a === '-v') opt.verbose = true;
  else if (a === '--expect-fail') opt.expectFail = val();
  else if (a === '--timeout') opt.timeout = Number(val());
  else if (a === '-h' || a === '--help') usage();
  else if (a.startsWith('-')) usage(`unknown flag ${a}`);
  else opt.scripts.push(path.resolve(a));
}
if (!opt.apiKey) usage('no API key: --api-key-file F or API_KEY');
if (!(opt.iterations >= 1)) usage('--iterations: at least 1');
if (!opt.scripts.length) {
  opt.scripts = readdirSync(loadtestDir)
    .filter((f) => f.endsWith('.js'))
    .sort()
    .map((f) => path.join(loadtestDir, f));
}
if (!opt.scripts.length) usage(`no k6 scripts in ${loadtestDir}`);

const tmp = mkdtempSync(path.join(tmpdir(), 'herald-k6-check-'));
const env = { ...SMALL_ENV, ...opt.env, BASE_URL: opt.baseUrl, API_KEY: opt.apiKey };

function fmt(v) {
  if (v === null || v === undefined) return '-';
  return Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(3);
}

let failed = 0;
for (const script of opt.scripts) {
  const name = path.relative(process.cwd(), script) || script;
  if (!existsSync(script)) {
    console.log(`FAIL  ${name}: no such file`);
    failed++;
    continue;
  }
  const resultFile = path.join(tmp, `${path.basename(script)}.json`);
  const t0 = Date.now();
  const child = spawnSync(process.execPath, ['--import', path.join(here, 'register.mjs'), path.join(here, 'run-script.mjs'), script], {
    env: {
      ...process.env,
      HERALD_K6_ENV: JSON.stringify(env),
      HERALD_K6_ITERATIONS: String(opt.iterations),
      HERALD_K6_RESULT: resultFile,
      HERALD_K6_SCRIPT_ROOT: script.startsWith(loadtestDir + path.sep) ? loadtestDir : path.dirname(script),
    },
    encoding: 'utf8',
    timeout: opt.timeout * 1000,
    maxBuffer: 64 * 1024 * 1024,
  });
  let result = null;
  try {
    result = JSON.parse(readFileSync(resultFile, 'utf8'));
  } catch {
    result = null;
  }
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  const logs = `${child.stdout || ''}${child.stderr || ''}`.trim();
  let ok;
  let lines = [];
  if (!result) {
    ok = false;
    const why = child.error ? child.error.message : `exit ${child.status}${child.signal ? ` (${child.signal})` : ''}`;
    lines.push(`the runner gave no verdict: ${why}`);
    if (logs) lines.push(...logs.split('\n').slice(-15));
  } else {
    ok = result.ok;
    const failedThresholds = result.thresholds.filter((t) => t.ok === false);
    if (opt.strict && failedThresholds.length) ok = false;
    for (const f of result.failures) lines.push(`${f.kind}: ${f.message}`);
    if (opt.strict) for (const t of failedThresholds) lines.push(`threshold ${t.key} ${t.expr} crossed: ${fmt(t.value)}`);
  }
  let verdict = ok;
  let note = '';
  if (opt.expectFail !== null) {
    const matched = !!result && !result.ok && result.failures.some((f) => f.message.includes(opt.expectFail));
    verdict = matched;
    note = matched ? ` (failed as expected: "${opt.expectFail}")` : ` (expected a failure mentioning "${opt.expectFail}")`;
  }
  const stats = result
    ? `${result.scenarios.length} scenario(s) x ${opt.iterations} iterations, ${result.requests} requests, ${result.checks.reduce((n, c) => n + c.passes + c.fails, 0)} checks`
    : '';
  console.log(`${verdict ? 'PASS' : 'FAIL'}  ${name}  ${stats} ${secs}s${note}`);
  if (!verdict || opt.expectFail !== null) for (const l of lines) console.log(`      ${l}`);
  if (result && opt.verbose) {
    for (const c of result.checks) console.log(`      check ${c.group ? `${c.group} ` : ''}"${c.name}": ${c.passes} passed, ${c.fails} failed`);
    for (const m of result.summaries || []) {
      const vals = Object.entries(m).filter(([k]) => k !== 'metric' && k !== 'samples').map(([k, v]) => `${k} ${fmt(v)}`).join(', ');
      console.log(`      metric ${m.metric}: ${vals} (${m.samples} samples)`);
    }
  }
  if (result) {
    for (const t of result.thresholds) {
      const state = t.ok === null ? 'no samples' : t.ok ? 'ok' : opt.strict ? 'CROSSED' : 'crossed (informational)';
      console.log(`      threshold ${t.key} ${t.expr}: ${fmt(t.value)} over ${t.samples} samples, ${state}`);
    }
  }
  if (!verdict && logs && result) {
    console.log('      script output (last lines):');
    for (const l of logs.split('\n').slice(-10)) console.log(`        ${l}`);
  }
  if (!verdict) failed++;
}
rmSync(tmp, { recursive: true, force: true });
console.log(failed ? `k6 check: ${failed} of ${opt.scripts.length} script(s) failed` : `k6 check: all ${opt.scripts.length} script(s) passed`);
process.exit(failed ? 1 : 0);
