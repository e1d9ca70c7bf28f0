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
  // QuickJS shares an object's shape only while some object holds it: these hold the shapes
  // of a RegExp match (groups, index, input are added in that order), so a function's
  // `replace` or `exec` finds them instead of building them on every request.
  var shapes = [];
  for (var n = 1; n <= 3; n++) {
    var a = [];
    a.groups = undefined;
    if (n > 1) a.index = 0;
    if (n > 2) a.input = '';
    shapes.push(a);
  }
  Object.defineProperty(invoke, 'shapes', { value: shapes });
  Object.defineProperty(globalThis, '__meridian_invoke', { value: invoke, enumerable: false, writable: false, configurable: false });
})
