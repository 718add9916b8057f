// Browser test of the analytics dashboard: node dashboard.mjs BASE_URL SCREENSHOT_PATH
// Loads the dashboard of a running analytics service in headless Chromium (Debian's, through
// playwright-core): checks that the API and the page refuse a request without the operator
// token, that the sign-in page refuses a wrong token and takes the right one
// (ANALYTICS_OPERATOR_TOKEN in the environment), then that the funnel on the page equals the query API's for the same
// filters, switches the channel and then the region filter and checks again (and that the
// numbers changed), posts one more batch to the ingest listener over mutual TLS
// (ANALYTICS_INGEST_URL, ANALYTICS_CA_FILE, ANALYTICS_CLIENT_CERT, ANALYTICS_CLIENT_KEY and
// ANALYTICS_TOKEN, us-east-1's, in the environment)
// and waits for the auto-refresh to show it without a reload, checks that no request left the
// service (no CDN), signs out and finds the page closed again, and saves a screenshot.
// Prints one JSON line with what the page showed; exits 1 on any mismatch.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { chromium } from 'playwright-core';

const [base, screenshot] = process.argv.slice(2);
if (!base || !screenshot) {
  console.error('usage: node dashboard.mjs BASE_URL SCREENSHOT_PATH');
  process.exit(2);
}
const failures = [];
const fail = (msg) => failures.push(msg);
const operator = process.env.ANALYTICS_OPERATOR_TOKEN;
if (!operator) {
  console.error('ANALYTICS_OPERATOR_TOKEN is not set');
  process.exit(2);
}
// postIngest posts body to the ingest listener as a region's exporter does: HTTPS with the
// region's client certificate, analytics' certificate verified against the test CA.
const postIngest = (path, token, body) => new Promise((resolve, reject) => {
  const env = (name) => {
    if (!process.env[name]) throw new Error(`${name} is not set`);
    return process.env[name];
  };
  const req = request(new URL(path, env('ANALYTICS_INGEST_URL')), {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    ca: readFileSync(env('ANALYTICS_CA_FILE')),
    cert: readFileSync(env('ANALYTICS_CLIENT_CERT')),
    key: readFileSync(env('ANALYTICS_CLIENT_KEY')),
    minVersion: 'TLSv1.3',
  }, (res) => {
    let data = '';
    res.setEncoding('utf8');
    res.on('data', (chunk) => { data += chunk; });
    res.on('end', () => resolve({ status: res.statusCode, body: data }));
  });
  req.on('error', reject);
  req.end(body);
});
// Set while a 401 is what the step expects (a wrong token, a signed-out page).
let expect401 = false;

const args = process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium', args });
const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1100 } });
  page.on('pageerror', (e) => fail('page error: ' + e.message));
  // While a 401 is expected, so is the browser's note of it (and of the favicon a 401 page asks for).
  page.on('console', (m) => {
    if (m.type() === 'error' && !(expect401 && m.text().startsWith('Failed to load resource'))) fail('console error: ' + m.text());
  });
  page.on('request', (r) => { if (!r.url().startsWith(base)) fail('request outside the service: ' + r.url()); });
  page.on('response', (r) => { if (r.status() >= 400 && !(expect401 && r.status() === 401)) fail(`${r.status()} for ${r.url()}`); });

  // Without the operator token: the API and the page answer 401, and show nothing.
  for (const [path, headers] of [['/v1/funnel', {}], ['/v1/meta', {}], ['/dashboard/', {}],
    ['/v1/funnel', { Authorization: `Bearer ${process.env.ANALYTICS_TOKEN}` }], ['/v1/funnel', { Authorization: 'Bearer wrong-operator-token-0123456789abcdef' }]]) {
    const res = await fetch(base + path, { headers });
    const body = await res.text();
    if (res.status !== 401 || !body.includes('"unauthorized"') || body.includes('accepted')) fail(`${path} ${JSON.stringify(headers)}: ${res.status} ${body}`);
  }

  // Waits for the render of the filters that include want (a query-string fragment).
  const loaded = (want) => page.waitForFunction(
    (w) => document.body.dataset.state === 'loaded' && (document.body.dataset.query || '').includes(w), want, { timeout: 45000 });

  // The funnel as the page shows it: the visible text and the value behind it.
  const pageFunnel = () => page.$$eval('#funnel [data-stage]', (tds) => tds.map((td) => ({
    stage: td.dataset.stage, count: Number(td.dataset.count), text: td.textContent,
  })));

  const check = async (label) => {
    const query = await page.evaluate(() => document.body.dataset.query);
    const res = await fetch(`${base}/v1/funnel?${query}`, { headers: { Authorization: `Bearer ${operator}` } });
    if (!res.ok) throw new Error(`${label}: the API answered ${res.status}`);
    const api = await res.json();
    const shown = await pageFunnel();
    const fmt = new Intl.NumberFormat('en-US');
    if (shown.length !== api.stages.length) fail(`${label}: ${shown.length} stages on the page, ${api.stages.length} from the API`);
    for (const s of api.stages) {
      const row = shown.find((r) => r.stage === s.stage);
      if (!row) { fail(`${label}: stage ${s.stage} missing on the page`); continue; }
      if (row.count !== s.count || row.text !== fmt.format(s.count)) {
        fail(`${label}: ${s.stage} shows "${row.text}" (${row.count}), the API says ${s.count}`);
      }
    }
    const chart = await page.evaluate(() => Chart.getChart('funnel-chart').data.datasets[0].data);
    if (JSON.stringify(chart) !== JSON.stringify(api.stages.map((s) => s.count))) fail(`${label}: the funnel chart plots ${chart}`);
    // The over-time chart adds up to the funnel's delivered count.
    const overTime = await page.evaluate(() => Chart.getChart('series-chart').data.datasets
      .find((d) => d.label === 'delivered').data.reduce((a, b) => a + b, 0));
    const delivered = api.stages.find((s) => s.stage === 'delivered').count;
    if (overTime !== delivered) fail(`${label}: the over-time chart adds up to ${overTime} delivered, the funnel says ${delivered}`);
    seen[label] = Object.fromEntries(shown.map((r) => [r.stage, r.count]));
    return seen[label];
  };

  // Sign in: a wrong token is refused on the page, the operator's opens the dashboard.
  await page.goto(base + '/dashboard/login.html?refresh=1');
  await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 15000 });
  expect401 = true;
  await page.fill('#token', 'wrong-operator-token-0123456789abcdef');
  await page.click('#signin-button');
  await page.waitForFunction(() => document.body.dataset.state === 'error', null, { timeout: 15000 });
  expect401 = false;
  if (!page.url().endsWith('/dashboard/login.html?refresh=1')) fail(`a wrong token left the sign-in page for ${page.url()}`);
  await page.fill('#token', operator);
  await Promise.all([page.waitForURL(base + '/dashboard/?refresh=1', { timeout: 15000 }), page.click('#signin-button')]);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'herald_analytics_session');
  if (!session || !session.httpOnly || session.sameSite !== 'Strict' || session.value.includes(operator)) fail(`session cookie ${JSON.stringify(session)}`);
  if (await page.evaluate(() => document.cookie.includes('herald_analytics_session'))) fail('the session cookie is readable by scripts');
  await loaded('from=');
  const all = await check('all');

  await page.selectOption('#f-channel', 'sms');
  await loaded('channel=sms');
  const sms = await check('channel=sms');
  if (sms.fanned_out === all.fanned_out) fail(`the channel filter did not change fanned_out (${sms.fanned_out})`);

  await page.selectOption('#f-region', 'us-east-1');
  await loaded('region=us-east-1');
  const us = await check('region=us-east-1&channel=sms');
  if (us.accepted === sms.accepted) fail(`the region filter did not change accepted (${us.accepted})`);

  // Auto-refresh: a new batch shows up without a reload.
  const token = process.env.ANALYTICS_TOKEN;
  const window = new Date(Math.floor(Date.now() / 60000) * 60000 - 60000).toISOString().replace('.000Z', 'Z');
  const post = await postIngest('/v1/aggregates', token, JSON.stringify({
    version: 1, region: 'us-east-1', window_start: window, seq: 7, withheld: 0,
    cells: [{ app: 'shop', tier: 'transactional', category: 'order', channel: 'sms', country: 'US', stage: 'delivered', count: 250, distinct_recipients: 240 }],
  }));
  if (post.status !== 200) throw new Error(`posting the refresh batch: ${post.status} ${post.body}`);
  await page.waitForFunction(
    (want) => Number(document.querySelector('#funnel [data-stage="delivered"]').dataset.count) === want,
    us.delivered + 250, { timeout: 45000 });
  await check('after auto-refresh');

  // The other panels rendered from the same filters.
  const p99 = await page.textContent('[data-p99="transactional"]');
  if (!p99 || !p99.includes('ms')) fail(`latency p99 shows "${p99}"`);
  const smsCost = await page.textContent('[data-cost="sms"]');
  if (!smsCost || !smsCost.startsWith('$')) fail(`sms cost shows "${smsCost}"`);
  seen.p99_transactional = p99;
  seen.cost_sms = smsCost;

  await page.screenshot({ path: screenshot, fullPage: true });

  // Sign out: back on the sign-in page, and the dashboard is closed again.
  await Promise.all([page.waitForURL(/\/dashboard\/login\.html/, { timeout: 15000 }), page.click('#signout')]);
  expect401 = true;
  const closed = await page.goto(base + '/dashboard/');
  if (closed.status() !== 401) fail(`the dashboard after sign-out answered ${closed.status()}`);
  const api = await page.evaluate(async () => (await fetch('/v1/funnel')).status);
  if (api !== 401) fail(`the API after sign-out answered ${api}`);
  expect401 = false;
} catch (err) {
  fail(String(err && err.stack ? err.stack : err));
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
if (failures.length) {
  for (const f of failures) console.error('FAIL ' + f);
  process.exit(1);
}
