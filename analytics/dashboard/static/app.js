// Herald analytics dashboard: reads the query API with the page's filters and draws tables
// and charts. Every number shown comes from the API as is, so the browser test can compare
// the page with the API.
'use strict';

const $ = (id) => document.getElementById(id);
const charts = {};
const fmt = new Intl.NumberFormat('en-US');
let timer = null;
let seq = 0;
// ?refresh=N sets the auto-refresh period in seconds (default 10).
const refreshSeconds = Math.max(1, Number(new URLSearchParams(location.search).get('refresh')) || 10);

function filterQuery() {
  const q = new URLSearchParams();
  for (const name of ['region', 'tier', 'channel']) {
    const v = $('f-' + name).value;
    if (v) q.set(name, v);
  }
  const minutes = Number($('f-range').value);
  const to = new Date(Math.floor(Date.now() / 60000) * 60000 + 60000);
  q.set('from', new Date(to - minutes * 60000).toISOString().replace('.000Z', 'Z'));
  q.set('to', to.toISOString().replace('.000Z', 'Z'));
  return q;
}

// The API answers operators only: the session cookie rides along (same origin). Without a
// valid one (never signed in, expired, or the operator token changed) it answers 401: sign in.
const signInPage = '/dashboard/login.html';

async function getJSON(path, q) {
  const res = await fetch(path + '?' + q.toString(), { cache: 'no-store' });
  if (res.status === 401) {
    location.replace(signInPage + location.search);
    throw new Error('signed out');
  }
  const body = await res.json();
  if (!res.ok) throw new Error(`${path}: ${body.error ? body.error.message : res.status}`);
  return body;
}

function rows(tbody, data, cells) {
  tbody.replaceChildren(...data.map((d) => {
    const tr = document.createElement('tr');
    for (const c of cells(d)) {
      const td = document.createElement('td');
      td.textContent = c.text;
      if (c.cls) td.className = c.cls;
      if (c.attrs) for (const [k, v] of Object.entries(c.attrs)) td.setAttribute(k, v);
      tr.appendChild(td);
    }
    return tr;
  }));
}

function draw(id, type, labels, datasets, extra = {}) {
  if (charts[id]) {
    charts[id].data.labels = labels;
    charts[id].data.datasets = datasets;
    charts[id].update('none');
    return;
  }
  charts[id] = new Chart($(id), {
    type,
    data: { labels, datasets },
    options: Object.assign({ animation: false, maintainAspectRatio: false, plugins: { legend: { display: datasets.length > 1 } } }, extra),
  });
}

const ms = (v) => (v === null ? '>' + fmt.format(window.lastBound || 0) + ' ms' : fmt.format(v) + ' ms');

async function refresh() {
  const mine = ++seq;
  const q = filterQuery();
  document.body.dataset.state = 'loading';
  try {
    const [funnel, dropoff, latency, cost, series] = await Promise.all([
      getJSON('/v1/funnel', q), getJSON('/v1/dropoff', q), getJSON('/v1/latency', q), getJSON('/v1/cost', q),
      getJSON('/v1/series', q),
    ]);
    if (mine !== seq) return; // a newer refresh started: its answer wins
    const stepLabel = { '1m0s': 'minute', '1h0m0s': 'hour', '24h0m0s': 'day' }[series.step] || series.step;
    $('series-step').textContent = stepLabel;
    const when = (iso) => {
      const d = new Date(iso);
      return series.step === '24h0m0s' ? d.toISOString().slice(0, 10) : d.toISOString().slice(11, 16);
    };
    const lines = [['fanned_out', '#3b6fd8'], ['delivered', '#2fa37a'], ['suppressed', '#d8793b'], ['failed', '#c94f6d']];
    draw('series-chart', 'line', series.buckets.map((b) => when(b.start)),
      lines.map(([stage, color]) => ({
        label: stage, data: series.buckets.map((b) => b.counts[stage]), borderColor: color, backgroundColor: color,
        pointRadius: 0, borderWidth: 2,
      })), { plugins: { legend: { display: true } }, scales: { y: { beginAtZero: true } } });
    rows($('funnel').tBodies[0], funnel.stages, (s) => [
      { text: s.stage + (s.channel_scoped ? '' : ' *') },
      { text: fmt.format(s.count), cls: 'num', attrs: { 'data-stage': s.stage, 'data-count': String(s.count) } },
    ]);
    $('withheld').textContent = fmt.format(funnel.withheld);
    draw('funnel-chart', 'bar', funnel.stages.map((s) => s.stage),
      [{ label: 'count', data: funnel.stages.map((s) => s.count), backgroundColor: '#3b6fd8', maxBarThickness: 28 }], { indexAxis: 'y' });

    $('fanned-out').textContent = fmt.format(dropoff.fanned_out);
    rows($('dropoff').tBodies[0], dropoff.reasons, (r) => [
      { text: r.stage }, { text: r.reason || '—' },
      { text: fmt.format(r.count), cls: 'num', attrs: { 'data-drop': r.stage + '/' + r.reason } },
      { text: (r.share_of_fanned_out * 100).toFixed(2) + '%', cls: 'num' },
    ]);
    draw('dropoff-chart', 'bar', dropoff.reasons.map((r) => r.stage + (r.reason ? '/' + r.reason : '')),
      [{ label: 'count', data: dropoff.reasons.map((r) => r.count), backgroundColor: '#d8793b', maxBarThickness: 28 }], { indexAxis: 'y' });

    window.lastBound = latency.bounds_ms[latency.bounds_ms.length - 1];
    rows($('latency').tBodies[0], latency.tiers, (t) => [
      { text: t.tier }, { text: fmt.format(t.count), cls: 'num' },
      { text: t.count ? ms(t.p50_ms) : '—', cls: 'num' }, { text: t.count ? ms(t.p90_ms) : '—', cls: 'num' },
      { text: t.count ? ms(t.p99_ms) : '—', cls: 'num', attrs: { 'data-p99': t.tier } },
      { text: t.slo_p99_ms === null ? 'none' : '< ' + fmt.format(t.slo_p99_ms) + ' ms', cls: 'num' },
      { text: t.slo_met === null ? '—' : (t.slo_met ? 'yes' : 'no'), cls: t.slo_met === null ? '' : (t.slo_met ? 'ok' : 'bad') },
    ]);
    draw('latency-chart', 'bar', latency.tiers.map((t) => t.tier), [
      { label: 'p99 (s)', data: latency.tiers.map((t) => (t.count ? (t.p99_ms ?? window.lastBound) / 1000 : 0)), backgroundColor: '#7a4fd1', maxBarThickness: 48 },
      { label: 'SLO p99 (s)', data: latency.tiers.map((t) => (t.slo_p99_ms ?? 0) / 1000), backgroundColor: '#b9c2cf', maxBarThickness: 48 },
    ]);

    const money = new Intl.NumberFormat('en-US', { style: 'currency', currency: cost.currency, maximumFractionDigits: 4 });
    rows($('cost').tBodies[0], cost.channels, (c) => [
      { text: c.channel }, { text: fmt.format(c.messages), cls: 'num' },
      { text: money.format(c.cost), cls: 'num', attrs: { 'data-cost': c.channel } },
    ]);
    $('cost-total').textContent = money.format(cost.total);
    rows($('sms-cost').tBodies[0], cost.sms_by_country, (r) => [
      { text: r.country || 'unknown (folded)' }, { text: fmt.format(r.messages), cls: 'num' },
      { text: money.format(r.unit_price), cls: 'num' }, { text: money.format(r.cost), cls: 'num' },
    ]);
    $('unattributed').textContent = fmt.format(cost.unattributed_messages);
    draw('cost-chart', 'doughnut', cost.channels.map((c) => c.channel),
      [{ label: cost.currency, data: cost.channels.map((c) => c.cost), backgroundColor: ['#3b6fd8', '#2fa37a', '#d8793b', '#c94f6d'] }],
      { plugins: { legend: { display: true, position: 'right' } } });

    $('error').hidden = true;
    $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    document.body.dataset.query = q.toString();
    document.body.dataset.state = 'loaded';
  } catch (err) {
    if (mine !== seq) return;
    $('error').textContent = err.message;
    $('error').hidden = false;
    document.body.dataset.state = 'error';
  }
}

function schedule() {
  clearInterval(timer);
  if ($('f-auto').checked) timer = setInterval(refresh, refreshSeconds * 1000);
}

async function init() {
  $('signout').addEventListener('click', async () => {
    await fetch('/v1/session', { method: 'DELETE', cache: 'no-store' });
    location.replace(signInPage);
  });
  const meta = await getJSON('/v1/meta', new URLSearchParams());
  $('k').textContent = meta.k;
  $('auto-label').textContent = `auto-refresh (${refreshSeconds} s)`;
  for (const [id, values] of [['f-region', meta.regions], ['f-tier', meta.tiers], ['f-channel', meta.channels]]) {
    for (const v of values) $(id).add(new Option(v, v));
  }
  for (const id of ['f-region', 'f-tier', 'f-channel', 'f-range']) $(id).addEventListener('change', refresh);
  $('f-auto').addEventListener('change', schedule);
  schedule();
  await refresh();
}

init().catch((err) => {
  $('error').textContent = 'could not load: ' + err.message;
  $('error').hidden = false;
  document.body.dataset.state = 'error';
});
