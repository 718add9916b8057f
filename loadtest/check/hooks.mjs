// Module hooks (module.register) that load a k6 script under Node: the k6 modules resolve to the
// stand-ins in ./k6/, other k6 modules and remote (jslib) imports are refused with a message
// naming them, and the scripts' .js files are loaded as ES modules (k6 scripts are ES modules;
// no package.json marks loadtest/ as one).
const SHIMS = {
  k6: './k6/k6.mjs',
  'k6/http': './k6/http.mjs',
  'k6/metrics': './k6/metrics.mjs',
  'k6/execution': './k6/execution.mjs',
};

let scriptRoot = null;

export async function initialize(data) {
  scriptRoot = data && data.scriptRoot ? data.scriptRoot : null;
}

export async function resolve(specifier, context, next) {
  if (Object.hasOwn(SHIMS, specifier)) {
    return { url: new URL(SHIMS[specifier], import.meta.url).href, shortCircuit: true };
  }
  if (specifier === 'k6' || specifier.startsWith('k6/')) {
    throw new Error(`${specifier}: the Node check has no stand-in for this k6 module (loadtest/check/k6/); add one or do without it`);
  }
  if (/^https?:\/\//.test(specifier)) {
    throw new Error(`${specifier}: remote modules cannot be loaded by the Node check (and tie a run to the network); vendor it under loadtest/lib/`);
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (scriptRoot && url.startsWith(scriptRoot) && url.endsWith('.js') && !url.includes('/node_modules/')) {
    return next(url, { ...context, format: 'module' });
  }
  return next(url, context);
}
