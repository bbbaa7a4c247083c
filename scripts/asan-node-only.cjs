// Loaded with `node --require` (NODE_OPTIONS) in the ASan/UBSan test pass of `npm test`
// (scripts/build-native-asan.mjs asanEnv): the ASan runtime is preloaded into `node`
// processes only. PostgreSQL, initdb, openssl, nginx and the other programs the tests start
// hang or fail with the runtime preloaded, so children started through child_process get
// LD_PRELOAD only when they are `node` itself (the gateway processes the tests spawn load
// build/Asan/vecgate.node and need it). exec()/execSync() shell commands are left alone.
'use strict';
const childProcess = require('node:child_process');
const path = require('node:path');
const { syncBuiltinESMExports } = require('node:module');

const runtime = process.env.VECGATE_ASAN_RUNTIME;
if (runtime) {
  const isNode = (file) =>
    typeof file === 'string' && (file === process.execPath || path.basename(file) === 'node' || path.basename(file) === path.basename(process.execPath));

  // (args?, options?, ...) after the file -> the same, with an env that has LD_PRELOAD for a
  // node child and none for anything else. process.env keeps it, so node's own children
  // (the test runner's, worker processes) inherit it.
  const adjust = (file, rest) => {
    const i = Array.isArray(rest[0]) ? 1 : 0;
    const opts = rest[i] && typeof rest[i] === 'object' ? rest[i] : null;
    const env = { ...((opts && opts.env) || process.env) };
    if (isNode(file)) env.LD_PRELOAD = runtime;
    else delete env.LD_PRELOAD;
    const out = rest.slice();
    if (opts) out[i] = { ...opts, env };
    else out.splice(i, 0, { env });
    return out;
  };

  for (const name of ['spawn', 'spawnSync', 'execFile', 'execFileSync']) {
    const original = childProcess[name];
    childProcess[name] = function (file, ...rest) {
      return original.call(this, file, ...adjust(file, rest));
    };
  }
  const fork = childProcess.fork;
  childProcess.fork = function (modulePath, ...rest) {
    return fork.call(this, modulePath, ...adjust(process.execPath, rest));
  };
  syncBuiltinESMExports();
}
