// Stand-in for the k6 module: check, group, sleep, fail, randomSeed.
import { state, recordBuiltin, recordCheck, excerpt } from '../runtime/state.mjs';
import { sleepSync } from '../runtime/sync-http.mjs';

function describe(val) {
  if (val && typeof val === 'object' && val.request && 'status' in val) {
    const err = val.error ? ` (${val.error})` : '';
    return `${val.request.method} ${val.request.url} -> ${val.status}${err}: ${excerpt(val.body, 200)}`;
  }
  try {
    return excerpt(JSON.stringify(val), 200);
  } catch {
    return String(val);
  }
}

export function check(val, sets, tags) {
  if (!sets || typeof sets !== 'object') throw new Error('check(value, {name: fn|bool, ...}) needs an object of checks');
  let all = true;
  for (const [name, fn] of Object.entries(sets)) {
    const ok = !!(typeof fn === 'function' ? fn(val) : fn);
    recordCheck(name, ok, ok ? null : describe(val));
    recordBuiltin('checks', ok, { ...(tags || {}), check: name });
    if (!ok) all = false;
  }
  return all;
}

export function group(name, fn) {
  if (typeof name !== 'string' || !name || name.includes('::')) throw new Error(`group name ${JSON.stringify(name)}: non-empty, without "::"`);
  if (typeof fn !== 'function') throw new Error(`group ${name}: needs a function`);
  if (fn.constructor && fn.constructor.name === 'AsyncFunction') throw new Error(`group ${name}: k6 does not support async functions in group()`);
  state.groups.push(name);
  const t0 = performance.now();
  try {
    return fn();
  } finally {
    recordBuiltin('group_duration', performance.now() - t0, {});
    state.groups.pop();
  }
}

export function sleep(seconds) {
  if (typeof seconds !== 'number' || !(seconds >= 0)) throw new Error(`sleep(${seconds}): seconds must be a number >= 0`);
  sleepSync(seconds);
}

export function fail(message) {
  throw new Error(message === undefined ? 'fail() called' : String(message));
}

export function randomSeed() {}

export default { check, group, sleep, fail, randomSeed };
