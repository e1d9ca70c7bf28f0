// JWT verification with HS256 (viewer-request).
//
// Reads "Authorization: Bearer <jwt>" (or the "token" cookie), checks the HS256 signature
// with crypto.createHmac in constant time, checks exp/nbf, and forwards the subject to the
// origin as x-user-sub. Anything else is answered with 401 at the edge.
//
// Test events (secret "meridian-demo-secret"):
//   valid token, exp in the future      -> request with x-user-sub
//   signature changed / exp in the past -> 401
//   no token                            -> 401
import crypto from 'crypto';

const SECRET = 'meridian-demo-secret';

function deny(reason) {
  return {
    statusCode: 401,
    statusDescription: 'Unauthorized',
    headers: { 'www-authenticate': { value: 'Bearer error="invalid_token", error_description="' + reason + '"' } },
  };
}

function safeEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

function decodePart(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

function handler(event) {
  const request = event.request;
  let token = null;
  const auth = request.headers.authorization;
  if (auth && auth.value.startsWith('Bearer ')) token = auth.value.slice(7).trim();
  else if (request.cookies.token) token = request.cookies.token.value;
  if (!token) return deny('missing token');

  const parts = token.split('.');
  if (parts.length !== 3) return deny('malformed token');
  let header, payload;
  try {
    header = decodePart(parts[0]);
    payload = decodePart(parts[1]);
  } catch (e) {
    return deny('malformed token');
  }
  if (header.alg !== 'HS256') return deny('unsupported alg');
  const expected = crypto.createHmac('sha256', SECRET).update(parts[0] + '.' + parts[1]).digest('base64url');
  if (!safeEqual(expected, parts[2])) return deny('bad signature');
  const now = Math.floor(Date.now() / 1000);
  if (typeof payload.exp === 'number' && now >= payload.exp) return deny('expired');
  if (typeof payload.nbf === 'number' && now < payload.nbf) return deny('not yet valid');

  delete request.headers.authorization;
  request.headers['x-user-sub'] = { value: String(payload.sub) };
  return request;
}
