// Redirect by viewer country (viewer-request).
//
// Uses the cloudfront-viewer-country header, which the behavior's origin request policy (or
// cache policy) must name, as at CloudFront. Viewers from a country with a localised site get
// a 302 to the country prefix, unless they are already under it.
//
// Test events:
//   country DE, uri "/shop?x=1" (querystring x=1) -> 302 location https://www.example.com/de/shop?x=1
//   country DE, uri "/de/shop"                     -> request unchanged
//   country US, uri "/shop"                        -> request unchanged
const PREFIXES = { DE: '/de', AT: '/de', FR: '/fr', JP: '/jp' };

function handler(event) {
  const request = event.request;
  const country = request.headers['cloudfront-viewer-country'];
  const prefix = country && PREFIXES[country.value];
  if (!prefix || request.uri === prefix || request.uri.startsWith(prefix + '/')) return request;
  const qs = Object.keys(request.querystring)
    .map((k) => k + '=' + request.querystring[k].value)
    .join('&');
  const host = request.headers.host ? request.headers.host.value : event.context.distributionDomainName;
  return {
    statusCode: 302,
    statusDescription: 'Found',
    headers: {
      location: { value: 'https://' + host + prefix + request.uri + (qs ? '?' + qs : '') },
      'cache-control': { value: 'max-age=3600' },
    },
  };
}
