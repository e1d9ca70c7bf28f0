// require(), CommonJS globals for origin hooks, and the entry point the engine calls.
(function (N, M) {
  globalThis.require = function (name) {
    name = String(name).replace(/^node:/, '');
    if (!Object.prototype.hasOwnProperty.call(M, name)) throw new Error("Cannot find module '" + name + "'");
    return M[name];
  };
  var invoke;
  if (N.kind === 'viewer-request' || N.kind === 'viewer-response') {
    invoke = function (ev) {
      if (typeof handler !== 'function') throw new TypeError('handler is not a function');
      return handler(ev);
    };
  } else {
    var module = { exports: {} };
    globalThis.module = module;
    globalThis.exports = module.exports;
    invoke = function (ev) {
      var h = module.exports && module.exports.handler;
      if (typeof h !== 'function') throw new TypeError('exports.handler is not a function');
      var context = { functionName: N.name, callbackWaitsForEmptyEventLoop: false };
      return new Promise(function (resolve, reject) {
        var r = h(ev, context, function (err, res) { if (err) reject(err); else resolve(res); });
        if (r && typeof r.then === 'function') r.then(resolve, reject);
        else if (h.length < 3) resolve(r);
      });
    };
  }
  Object.defineProperty(globalThis, '__meridian_invoke', { value: invoke, enumerable: false, writable: false, configurable: false });
})
