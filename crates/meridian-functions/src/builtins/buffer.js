// Buffer (a Uint8Array subclass, like Node), TextEncoder/TextDecoder, atob/btoa.
(function (N, M) {
  function norm(enc) {
    enc = (enc || 'utf8').toLowerCase();
    if (enc === 'utf-8') return 'utf8';
    if (enc === 'binary') return 'latin1';
    return enc;
  }
  function latin1Bytes(s) {
    var b = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) & 0xff;
    return b;
  }
  function latin1String(b, mask) {
    var s = '';
    for (var i = 0; i < b.length; i += 4096)
      s += String.fromCharCode.apply(null, Array.prototype.slice.call(b.subarray(i, i + 4096)).map(function (c) { return c & mask; }));
    return s;
  }
  class Buffer extends Uint8Array {
    static from(v, enc, len) {
      if (typeof v === 'string') {
        enc = norm(enc);
        var b;
        if (enc === 'utf8') b = N.utf8Encode(v);
        else if (enc === 'base64' || enc === 'base64url') b = N.b64Decode(v, false);
        else if (enc === 'hex') b = N.hexDecode(v);
        else if (enc === 'latin1' || enc === 'ascii') b = latin1Bytes(v);
        else throw new TypeError('Unknown encoding: ' + enc);
        return new Buffer(b.buffer, b.byteOffset, b.length);
      }
      if (v instanceof ArrayBuffer) return new Buffer(v, enc || 0, len === undefined ? v.byteLength - (enc || 0) : len);
      if (ArrayBuffer.isView(v) || Array.isArray(v)) { var c = new Buffer(v.length); c.set(v); return c; }
      if (v && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data);
      throw new TypeError('The first argument must be a string, Buffer, ArrayBuffer or Array');
    }
    static alloc(n, fill) { var b = new Buffer(n); if (fill !== undefined) b.fill(typeof fill === 'string' ? fill.charCodeAt(0) : fill); return b; }
    static allocUnsafe(n) { return new Buffer(n); }
    static isBuffer(b) { return b instanceof Buffer; }
    static byteLength(s, enc) { return typeof s === 'string' ? Buffer.from(s, enc).length : s.byteLength; }
    static concat(list, total) {
      if (total === undefined) { total = 0; for (var i = 0; i < list.length; i++) total += list[i].length; }
      var out = new Buffer(total), off = 0;
      for (var j = 0; j < list.length && off < total; j++) {
        var part = list[j].length > total - off ? list[j].subarray(0, total - off) : list[j];
        out.set(part, off); off += part.length;
      }
      return out;
    }
    static compare(a, b) { return a.compare(b); }
    toString(enc, start, end) {
      var b = (start !== undefined || end !== undefined) ? this.subarray(start || 0, end === undefined ? this.length : end) : this;
      enc = norm(enc);
      if (enc === 'utf8') return N.utf8Decode(b);
      if (enc === 'base64') return N.b64Encode(b, false);
      if (enc === 'base64url') return N.b64Encode(b, true);
      if (enc === 'hex') return N.hexEncode(b);
      if (enc === 'latin1') return latin1String(b, 0xff);
      if (enc === 'ascii') return latin1String(b, 0x7f);
      throw new TypeError('Unknown encoding: ' + enc);
    }
    toJSON() { return { type: 'Buffer', data: Array.prototype.slice.call(this) }; }
    equals(o) { return this.compare(o) === 0; }
    compare(o) {
      var n = Math.min(this.length, o.length);
      for (var i = 0; i < n; i++) if (this[i] !== o[i]) return this[i] < o[i] ? -1 : 1;
      return this.length === o.length ? 0 : (this.length < o.length ? -1 : 1);
    }
    slice(s, e) { return this.subarray(s, e); }
    write(str, off, enc) { var b = Buffer.from(str, enc); off = off || 0; var n = Math.min(b.length, this.length - off); this.set(b.subarray(0, n), off); return n; }
    readUInt8(o) { return this[o || 0]; }
    readUInt16BE(o) { o = o || 0; return (this[o] << 8) | this[o + 1]; }
    readUInt32BE(o) { o = o || 0; return ((this[o] << 24) >>> 0) + ((this[o + 1] << 16) | (this[o + 2] << 8) | this[o + 3]); }
  }
  class TextEncoder {
    get encoding() { return 'utf-8'; }
    encode(s) { return N.utf8Encode(s === undefined ? '' : String(s)); }
  }
  class TextDecoder {
    constructor(label) {
      label = (label || 'utf-8').toLowerCase();
      if (label !== 'utf-8' && label !== 'utf8') throw new RangeError('The "' + label + '" encoding is not supported');
    }
    get encoding() { return 'utf-8'; }
    decode(b) {
      if (b === undefined) return '';
      if (b instanceof ArrayBuffer) b = new Uint8Array(b);
      else if (!(b instanceof Uint8Array)) b = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
      return N.utf8Decode(b);
    }
  }
  globalThis.Buffer = Buffer;
  globalThis.TextEncoder = TextEncoder;
  globalThis.TextDecoder = TextDecoder;
  globalThis.btoa = function (s) {
    s = String(s);
    for (var i = 0; i < s.length; i++) if (s.charCodeAt(i) > 255) throw new Error('Invalid character');
    return N.b64Encode(latin1Bytes(s), false);
  };
  globalThis.atob = function (s) { return latin1String(N.b64Decode(String(s), true), 0xff); };
  M.buffer = { Buffer: Buffer };
})
