// crypto module: createHash / createHmac over native digests.
(function (N, M) {
  function toBytes(data, enc) {
    if (typeof data === 'string') return M.buffer.Buffer.from(data, enc || 'utf8');
    if (data instanceof Uint8Array) return data;
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    throw new TypeError('data must be a string, Buffer or TypedArray');
  }
  function concat(chunks) {
    if (chunks.length === 1) return chunks[0];
    return M.buffer.Buffer.concat(chunks);
  }
  function out(bytes, enc) {
    var b = M.buffer.Buffer.from(bytes);
    return enc === undefined ? b : b.toString(enc);
  }
  function Hash(alg) {
    this._alg = String(alg).toLowerCase();
    this._chunks = [];
    if (['md5', 'sha1', 'sha256', 'sha512'].indexOf(this._alg) < 0)
      throw new Error('Digest method not supported: ' + alg);
  }
  Hash.prototype.update = function (data, enc) { this._chunks.push(toBytes(data, enc)); return this; };
  Hash.prototype.digest = function (enc) {
    return out(N.digest(this._alg, concat(this._chunks.length ? this._chunks : [new Uint8Array(0)])), enc);
  };
  function Hmac(alg, key) {
    Hash.call(this, alg);
    this._key = toBytes(key);
  }
  Hmac.prototype = Object.create(Hash.prototype);
  Hmac.prototype.digest = function (enc) {
    return out(N.hmac(this._alg, this._key, concat(this._chunks.length ? this._chunks : [new Uint8Array(0)])), enc);
  };
  M.crypto = {
    createHash: function (alg) { return new Hash(alg); },
    createHmac: function (alg, key) { return new Hmac(alg, key); },
  };
})
