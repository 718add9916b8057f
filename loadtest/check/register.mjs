// node --import ./register.mjs: install the hooks of hooks.mjs, with the loadtest directory as
// the root whose .js files are ES modules (HERALD_K6_SCRIPT_ROOT, else the parent directory).
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const root = process.env.HERALD_K6_SCRIPT_ROOT || path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
register('./hooks.mjs', import.meta.url, { data: { scriptRoot: pathToFileURL(root).href + '/' } });
