// Browser test of the analytics dashboard: node dashboard.mjs BASE_URL SCREENSHOT_PATH
// Loads the dashboard of a running analytics service in headless Chromium (Debian's, through
// playwright-core), checks that the funnel on the page equals the query API's for the same
// filters, switches the channel and then the region filter and checks again (and that the
// numbers changed), posts one more batch (ANALYTICS_TOKEN, ANALYTICS_REGION in the environment)
// and waits for the auto-refresh to show it without a reload, checks that no request left the
// service (no CDN), and saves a screenshot.
// Prints one JSON line with what the page showed; exits 1 on any mismatch.
import { chromium } from 'playwright-core';

const [base, screenshot] = process.argv.slice(2);
if (!base || !screenshot) {
  console.error('usage: node dashboard.mjs BASE_URL SCREENSHOT_PATH');
  process.exit(2);
}
const failures = [];
const fail = (msg) => failures.push(msg);

const args = process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium', args });
const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1100 } });
  page.on('pageerror', (e) => fail('page error: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') fail('console error: ' + m.text()); });
  page.on('request', (r) => { if (!r.url().startsWith(base)) fail('request outside the service: ' + r.url()); });
  page.on('response', (r) => { if (r.status() >= 400) fail(`${r.status()} for ${r.url()}`); });

  // Waits for the render of the filters that include want (a query-string fragment).
  const loaded = (want) => page.waitForFunction(
    (w) => document.body.dataset.state === 'loaded' && (document.body.dataset.query || '').includes(w), want, { timeout: 45000 });

  // The funnel as the page shows it: the visible text and the value behind it.
  const pageFunnel = () => page.$$eval('#funnel [data-stage]', (tds) => tds.map((td) => ({
    stage: td.dataset.stage, count: Number(td.dataset.count), text: td.textContent,
  })));

  const check = async (label) => {
    const query = await page.evaluate(() => document.body.dataset.query);
    const res = await fetch(`${base}/v1/funnel?${query}`);
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

  await page.goto(base + '/dashboard/?refresh=1');
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
  const post = await fetch(`${base}/v1/aggregates`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({
      version: 1, region: 'us-east-1', window_start: window, seq: 7, withheld: 0,
      cells: [{ app: 'shop', tier: 'transactional', category: 'order', channel: 'sms', country: 'US', stage: 'delivered', count: 250, distinct_recipients: 240 }],
    }),
  });
  if (!post.ok) throw new Error(`posting the refresh batch: ${post.status} ${await post.text()}`);
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
