// Feature flags from the key value store (viewer-request).
//
// KVS key "flags" holds JSON such as {"newCheckout": true, "maintenance": false}.
// Each enabled flag becomes a header x-feature-<name>=on for the origin; "maintenance"
// answers 503 at the edge. Updating the store takes effect on the next request.
//
// Test events (uri "/checkout"):
//   flags {"newCheckout": true}   -> request with x-feature-newcheckout: on
//   flags {"maintenance": true}   -> 503 response
//   no "flags" key                -> request unchanged
import cf from 'cloudfront';

const kvs = cf.kvs();

async function handler(event) {
  const request = event.request;
  let flags = {};
  try {
    flags = await kvs.get('flags', { format: 'json' });
  } catch (e) {
    return request; // no flags configured
  }
  if (flags.maintenance === true) {
    return {
      statusCode: 503,
      statusDescription: 'Service Unavailable',
      headers: { 'retry-after': { value: '120' }, 'content-type': { value: 'text/plain' } },
      body: 'Down for maintenance',
    };
  }
  for (const name of Object.keys(flags)) {
    if (flags[name] === true) request.headers['x-feature-' + name.toLowerCase()] = { value: 'on' };
  }
  return request;
}
