// Runs the requests the main thread hands over (one k6 call: a request or a batch, at once, the
// way http.batch sends them in parallel), then posts the answers on the port and wakes the main
// thread, which is blocked in Atomics.wait: k6 code is synchronous, fetch is not.
import { parentPort, workerData } from 'node:worker_threads';

const { port, signal } = workerData;

// Go's canonical header form, which k6 uses for res.headers: "retry-after" -> "Retry-After".
function canonical(name) {
  return name
    .split('-')
    .map((p) => (p ? p[0].toUpperCase() + p.slice(1).toLowerCase() : p))
    .join('-');
}

async function one(r) {
  const t0 = performance.now();
  const out = {
    url: r.url,
    status: 0,
    body: null,
    headers: {},
    error: '',
    error_code: 0,
    timings: { blocked: 0, connecting: 0, tls_handshaking: 0, sending: 0, waiting: 0, receiving: 0, duration: 0 },
  };
  try {
    const res = await fetch(r.url, {
      method: r.method,
      headers: r.headers,
      body: r.body === null || r.body === undefined ? undefined : r.body,
      redirect: r.maxRedirects === 0 ? 'manual' : 'follow',
      signal: AbortSignal.timeout(r.timeoutMs),
    });
    const t1 = performance.now();
    out.status = res.status;
    out.url = res.url || r.url;
    for (const [k, v] of res.headers) {
      const ck = canonical(k);
      out.headers[ck] = out.headers[ck] === undefined ? v : `${out.headers[ck]}, ${v}`;
    }
    out.body = r.discardBody ? null : await res.text();
    if (r.discardBody) await res.arrayBuffer();
    const t2 = performance.now();
    out.timings.waiting = t1 - t0;
    out.timings.receiving = t2 - t1;
    out.timings.duration = t2 - t0;
  } catch (e) {
    const cause = e && e.cause ? `: ${e.cause.code || e.cause.message || e.cause}` : '';
    out.error = `${e && e.name === 'TimeoutError' ? 'request timeout' : e && e.message}${cause}`;
    out.error_code = e && e.name === 'TimeoutError' ? 1050 : 1000;
    out.timings.duration = performance.now() - t0;
  }
  return out;
}

parentPort.on('message', async (reqs) => {
  let results;
  try {
    results = await Promise.all(reqs.map(one));
  } catch (e) {
    results = { workerError: String(e && e.stack ? e.stack : e) };
  }
  port.postMessage(results);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
});
