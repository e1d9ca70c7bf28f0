// Security headers on every response (viewer-response).
//
// Test event: a 200 response with a "server" header
//   -> adds strict-transport-security, x-content-type-options, x-frame-options,
//      referrer-policy, content-security-policy; removes "server"; keeps content-type.
function handler(event) {
  const response = event.response;
  const h = response.headers;
  h['strict-transport-security'] = { value: 'max-age=63072000; includeSubDomains; preload' };
  h['x-content-type-options'] = { value: 'nosniff' };
  h['x-frame-options'] = { value: 'DENY' };
  h['referrer-policy'] = { value: 'strict-origin-when-cross-origin' };
  if (!h['content-security-policy']) {
    h['content-security-policy'] = { value: "default-src 'self'; frame-ancestors 'none'" };
  }
  delete h['server'];
  return response;
}
