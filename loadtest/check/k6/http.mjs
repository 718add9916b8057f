// Stand-in for k6/http: the same calls and response shape, answered by real HTTP requests
// (synchronous, as in k6), with the built-in http_* metrics recorded and every answer that the
// response callback does not expect (by default: anything outside 200-399) recorded as a failure
// of the run, the way k6 counts it in http_req_failed.
import { requestsSync } from '../runtime/sync-http.mjs';
import { state, counters, recordBuiltin, recordUnexpected, fail, excerpt } from '../runtime/state.mjs';

const PARAM_KEYS = new Set([
  'headers', 'tags', 'timeout', 'responseCallback', 'redirects', 'responseType', 'auth',
  'cookies', 'compression', 'jar',
]);
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

class ExpectedStatuses {
  constructor(ranges) {
    this.ranges = ranges;
  }
  expects(status) {
    return this.ranges.some(([lo, hi]) => status >= lo && status <= hi);
  }
}

export function expectedStatuses(...args) {
  if (!args.length) throw new Error('expectedStatuses: at least one status or {min, max}');
  const ranges = args.map((a, i) => {
    if (Number.isInteger(a)) return [a, a];
    if (a && Number.isInteger(a.min) && Number.isInteger(a.max)) return [a.min, a.max];
    throw new Error(`expectedStatuses: argument ${i} must be an integer status or {min, max} with integers`);
  });
  return new ExpectedStatuses(ranges);
}

const DEFAULT_CALLBACK = new ExpectedStatuses([[200, 399]]);

export function setResponseCallback(cb) {
  if (cb !== null && !(cb instanceof ExpectedStatuses)) {
    throw new Error('setResponseCallback takes the result of http.expectedStatuses() or null');
  }
  state.responseCallback = cb;
}

function parseTimeout(t) {
  if (t === undefined || t === null) return 60_000;
  if (typeof t === 'number') return t;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(String(t));
  if (!m) throw new Error(`request timeout ${JSON.stringify(t)} is not a duration like "30s"`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2]];
}

class URLTemplate {
  constructor(url, name) {
    this.url = url;
    this.name = name;
  }
  toString() {
    return this.url;
  }
}

// http.url`${base}/v1/users/${id}`: the URL, tagged with the template as its name.
export function url(strings, ...values) {
  let u = '';
  let name = '';
  strings.forEach((s, i) => {
    u += s;
    name += s;
    if (i < values.length) {
      u += String(values[i]);
      name += '${}';
    }
  });
  return new URLTemplate(u, name);
}

function prepare(method, target, body, params) {
  const m = String(method || '').toUpperCase();
  if (!METHODS.has(m)) throw new Error(`unsupported HTTP method ${JSON.stringify(method)}`);
  let u = target;
  let name;
  if (u instanceof URLTemplate) {
    name = u.name;
    u = u.url;
  }
  if (typeof u !== 'string') throw new Error(`${m}: the URL must be a string, got ${typeof u}`);
  let parsed;
  try {
    parsed = new URL(u);
  } catch {
    throw new Error(`${m} ${u}: not an absolute URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`${m} ${u}: not http(s)`);
  const p = params || {};
  if (typeof p !== 'object') throw new Error(`${m} ${u}: params must be an object`);
  for (const k of Object.keys(p)) {
    if (!PARAM_KEYS.has(k)) {
      fail('request', `${m} ${u}: unknown request parameter "${k}" (k6 knows ${[...PARAM_KEYS].join(', ')})`);
    }
  }
  const headers = {};
  for (const [k, v] of Object.entries(p.headers || {})) {
    if (v === undefined || v === null) throw new Error(`${m} ${u}: header ${k} is ${v}`);
    headers[k] = String(v);
  }
  let b = body;
  if (b !== null && b !== undefined && typeof b !== 'string') {
    if (b instanceof ArrayBuffer || ArrayBuffer.isView(b)) {
      b = Buffer.from(b instanceof ArrayBuffer ? b : b.buffer);
    } else if (typeof b === 'object') {
      // k6 sends an object body form-encoded (a JSON body must be JSON.stringify'd).
      b = new URLSearchParams(Object.entries(b).map(([k, v]) => [k, String(v)])).toString();
      if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
        headers['Content-Type'] = 'application/x-www-form-urlencoded';
      }
    } else {
      b = String(b);
    }
  }
  if (p.auth) throw new Error(`${m} ${u}: params.auth is not supported by the stand-in`);
  const tags = { ...(p.tags || {}) };
  if (!tags.name) tags.name = name || u;
  return {
    method: m,
    url: u,
    headers,
    body: b === undefined ? null : b,
    timeoutMs: parseTimeout(p.timeout),
    maxRedirects: p.redirects === undefined ? state.options.maxRedirects : p.redirects,
    discardBody: p.responseType === 'none' || state.options.discardResponseBodies === true,
    callback: 'responseCallback' in p ? p.responseCallback : state.responseCallback === null ? null : state.responseCallback || DEFAULT_CALLBACK,
    tags,
  };
}

// a gjson-like dotted path for res.json(selector): "a.b.0.c", "items.#" (length).
function select(v, path) {
  let cur = v;
  for (const part of String(path).split('.')) {
    if (cur === null || cur === undefined) return undefined;
    if (part === '#' && Array.isArray(cur)) cur = cur.length;
    else cur = cur[part];
  }
  return cur;
}

function makeResponse(req, out) {
  const res = {
    status: out.status,
    status_text: out.status ? String(out.status) : '',
    body: out.body,
    headers: out.headers,
    url: out.url,
    error: out.error,
    error_code: out.error_code,
    timings: out.timings,
    proto: 'HTTP/1.1',
    cookies: {},
    request: { method: req.method, url: req.url, headers: req.headers, body: req.body === null ? '' : String(req.body), cookies: {} },
    tags: req.tags,
    json(selector) {
      if (this.body === null || this.body === undefined) throw new Error(`${req.method} ${req.url}: no body to parse as JSON`);
      let v;
      try {
        v = JSON.parse(this.body);
      } catch (e) {
        throw new Error(`${req.method} ${req.url} (${this.status}): body is not JSON: ${e.message}: ${excerpt(this.body, 120)}`);
      }
      return selector === undefined ? v : select(v, selector);
    },
    html() {
      throw new Error('res.html() is not supported by the stand-in');
    },
    submitForm() {
      throw new Error('res.submitForm() is not supported by the stand-in');
    },
    clickLink() {
      throw new Error('res.clickLink() is not supported by the stand-in');
    },
  };
  return res;
}

function record(req, res) {
  counters.requests++;
  const cb = req.callback;
  const expected = cb ? res.status !== 0 && cb.expects(res.status) : res.status !== 0;
  const tags = {
    ...req.tags,
    method: req.method,
    url: req.url,
    status: String(res.status),
    expected_response: String(expected),
  };
  if (res.error_code) tags.error_code = String(res.error_code);
  recordBuiltin('http_reqs', 1, tags);
  const t = res.timings;
  recordBuiltin('http_req_duration', t.duration, tags);
  recordBuiltin('http_req_waiting', t.waiting, tags);
  recordBuiltin('http_req_receiving', t.receiving, tags);
  recordBuiltin('http_req_sending', t.sending, tags);
  recordBuiltin('http_req_blocked', t.blocked, tags);
  recordBuiltin('http_req_connecting', t.connecting, tags);
  recordBuiltin('http_req_tls_handshaking', t.tls_handshaking, tags);
  if (cb !== null || res.status === 0) recordBuiltin('http_req_failed', !expected, tags);
  if (!expected) recordUnexpected(req, res);
}

function run(reqs) {
  const outs = requestsSync(
    reqs.map((r) => ({
      method: r.method,
      url: r.url,
      headers: r.headers,
      body: r.body,
      timeoutMs: r.timeoutMs,
      maxRedirects: r.maxRedirects,
      discardBody: r.discardBody,
    })),
  );
  return outs.map((out, i) => {
    const res = makeResponse(reqs[i], out);
    record(reqs[i], res);
    return res;
  });
}

export function request(method, u, body, params) {
  return run([prepare(method, u, body, params)])[0];
}
export function get(u, params) {
  if (arguments.length > 2) throw new Error(`http.get(${u}, …): get takes (url, params), not a body`);
  return request('GET', u, null, params);
}
export function head(u, params) {
  return request('HEAD', u, null, params);
}
export function post(u, body, params) {
  return request('POST', u, body, params);
}
export function put(u, body, params) {
  return request('PUT', u, body, params);
}
export function patch(u, body, params) {
  return request('PATCH', u, body, params);
}
export function del(u, body, params) {
  return request('DELETE', u, body, params);
}
export function options(u, body, params) {
  return request('OPTIONS', u, body, params);
}

function batchItem(item, key) {
  if (typeof item === 'string' || item instanceof URLTemplate) return prepare('GET', item, null, undefined);
  if (Array.isArray(item)) {
    const [method, u, body, params] = item;
    return prepare(method, u, body, params);
  }
  if (item && typeof item === 'object') {
    const allowed = new Set(['method', 'url', 'body', 'params']);
    for (const k of Object.keys(item)) {
      if (!allowed.has(k)) throw new Error(`http.batch item ${key}: unknown field "${k}" (method, url, body, params)`);
    }
    return prepare(item.method || 'GET', item.url, item.body, item.params);
  }
  throw new Error(`http.batch item ${key}: a URL string, [method, url, body, params] or {method, url, body, params}`);
}

export function batch(requests) {
  if (Array.isArray(requests)) {
    if (!requests.length) return [];
    return run(requests.map((r, i) => batchItem(r, i)));
  }
  if (requests && typeof requests === 'object') {
    const keys = Object.keys(requests);
    if (!keys.length) return {};
    const outs = run(keys.map((k) => batchItem(requests[k], k)));
    return Object.fromEntries(keys.map((k, i) => [k, outs[i]]));
  }
  throw new Error('http.batch takes an array or an object of requests');
}

export function file() {
  throw new Error('http.file is not supported by the stand-in');
}

export default {
  request, get, head, post, put, patch, del, options, batch, url, file, expectedStatuses, setResponseCallback,
};
