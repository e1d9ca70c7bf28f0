// querystring module.
(function (N, M) {
  function unescape(s) {
    s = String(s).replace(/\+/g, ' ');
    try { return decodeURIComponent(s); } catch (e) {
      return s.replace(/%([0-9a-fA-F]{2})/g, function (_, h) { return String.fromCharCode(parseInt(h, 16)); });
    }
  }
  function escape(s) { return encodeURIComponent(String(s)); }
  function parse(str, sep, eq, opts) {
    sep = sep || '&'; eq = eq || '=';
    var out = {};
    if (typeof str !== 'string' || str.length === 0) return out;
    var max = (opts && typeof opts.maxKeys === 'number') ? opts.maxKeys : 1000;
    var dec = (opts && opts.decodeURIComponent) || unescape;
    var parts = str.split(sep);
    if (max > 0 && parts.length > max) parts = parts.slice(0, max);
    for (var i = 0; i < parts.length; i++) {
      if (parts[i] === '') continue;
      var idx = parts[i].indexOf(eq), k, v;
      if (idx >= 0) { k = dec(parts[i].slice(0, idx)); v = dec(parts[i].slice(idx + eq.length)); }
      else { k = dec(parts[i]); v = ''; }
      if (!Object.prototype.hasOwnProperty.call(out, k)) out[k] = v;
      else if (Array.isArray(out[k])) out[k].push(v);
      else out[k] = [out[k], v];
    }
    return out;
  }
  function prim(v) {
    if (typeof v === 'string') return v;
    if (typeof v === 'number' && isFinite(v)) return '' + v;
    if (typeof v === 'boolean') return v ? 'true' : 'false';
    return '';
  }
  function stringify(obj, sep, eq, opts) {
    sep = sep || '&'; eq = eq || '=';
    var enc = (opts && opts.encodeURIComponent) || escape;
    if (obj === null || typeof obj !== 'object') return '';
    var out = [];
    Object.keys(obj).forEach(function (k) {
      var v = obj[k], ks = enc(prim(k)) + eq;
      if (Array.isArray(v)) v.forEach(function (x) { out.push(ks + enc(prim(x))); });
      else out.push(ks + enc(prim(v)));
    });
    return out.join(sep);
  }
  M.querystring = { parse: parse, decode: parse, stringify: stringify, encode: stringify, escape: escape, unescape: unescape };
})
