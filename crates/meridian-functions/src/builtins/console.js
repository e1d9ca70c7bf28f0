// console: formats like Node for the common cases and hands the line to the native sink.
(function (N, M) {
  function fmt(v) {
    if (typeof v === 'string') return v;
    if (v instanceof Error) return String(v);
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') return String(v);
    try { var s = JSON.stringify(v); return s === undefined ? String(v) : s; } catch (e) { return String(v); }
  }
  function log() {
    var parts = [];
    for (var i = 0; i < arguments.length; i++) parts.push(fmt(arguments[i]));
    N.log(parts.join(' '));
  }
  globalThis.console = { log: log, info: log, warn: log, error: log, debug: log };
})
