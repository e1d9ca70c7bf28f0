// A/B testing by cookie, with weights (viewer-request).
//
// A viewer with cookie `ab-group=a|b` keeps its group. A new viewer is assigned by weight,
// deterministically from its IP (so a retry lands in the same group), and the assignment is
// added as a request cookie so the origin (and the cache key) see it.
// Group B is served from /experiment-b.
//
// Test events:
//   uri "/pricing", cookie ab-group=b    -> uri "/experiment-b/pricing"
//   uri "/pricing", cookie ab-group=a    -> uri "/pricing"
//   uri "/pricing", no cookie            -> cookie ab-group set to a or b (stable per IP)
import crypto from 'crypto';

const WEIGHTS = [['a', 80], ['b', 20]];

function pick(ip) {
  const bucket = parseInt(crypto.createHash('md5').update(ip).digest('hex').slice(0, 8), 16) % 100;
  let acc = 0;
  for (const [group, weight] of WEIGHTS) {
    acc += weight;
    if (bucket < acc) return group;
  }
  return WEIGHTS[0][0];
}

function handler(event) {
  const request = event.request;
  const cookie = request.cookies['ab-group'];
  let group = cookie && WEIGHTS.some(([g]) => g === cookie.value) ? cookie.value : null;
  if (!group) {
    group = pick(event.viewer.ip);
    request.cookies['ab-group'] = { value: group };
  }
  if (group === 'b') request.uri = '/experiment-b' + request.uri;
  return request;
}
