// cloudfront module: kvs() handles and origin modification helpers.
(function (N, M) {
  function Kvs(id) { this.id = id; }
  Kvs.prototype.get = function (key, opts) {
    try {
      var v = N.kvsGet(String(key));
      if (v === undefined || v === null) throw new Error('KeyValueStore: key "' + key + '" does not exist');
      var format = (opts && opts.format) || 'string';
      if (format === 'json') v = JSON.parse(v);
      else if (format === 'bytes') v = M.buffer.Buffer.from(v, 'utf8');
      else if (format !== 'string') throw new TypeError('KeyValueStore: unknown format ' + format);
      return Promise.resolve(v);
    } catch (e) { return Promise.reject(e); }
  };
  Kvs.prototype.exists = function (key) {
    try { return Promise.resolve(N.kvsExists(String(key))); } catch (e) { return Promise.reject(e); }
  };
  Kvs.prototype.meta = function () {
    try { return Promise.resolve(JSON.parse(N.kvsMeta())); } catch (e) { return Promise.reject(e); }
  };
  function requireViewerRequest(name) {
    if (N.kind !== 'viewer-request') throw new Error(name + ' can only be used in viewer-request functions');
  }
  function obj(name, p) {
    if (p === null || typeof p !== 'object' || Array.isArray(p)) throw new TypeError(name + ': params must be an object');
    return JSON.stringify(p);
  }
  M.cloudfront = {
    kvs: function (id) {
      if (!N.kvsAttached) throw new Error('No key value store is associated with this function');
      return new Kvs(id === undefined ? N.kvsId : String(id));
    },
    updateRequestOrigin: function (params) {
      requireViewerRequest('updateRequestOrigin');
      N.originChange('update', obj('updateRequestOrigin', params));
    },
    selectRequestOriginById: function (id) {
      requireViewerRequest('selectRequestOriginById');
      if (typeof id !== 'string' || id === '') throw new TypeError('selectRequestOriginById: origin id must be a non-empty string');
      N.originChange('select', JSON.stringify(id));
    },
    createRequestOriginGroup: function (params) {
      requireViewerRequest('createRequestOriginGroup');
      if (!params || !Array.isArray(params.originIds) || params.originIds.length < 2)
        throw new TypeError('createRequestOriginGroup: originIds must list at least two origins');
      N.originChange('group', obj('createRequestOriginGroup', params));
    },
  };
})
