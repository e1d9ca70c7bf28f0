// Pretty URLs and single-page apps (viewer-request).
//
// Pretty-URL mode (default): "/about" -> "/about/index.html", "/docs/" -> "/docs/index.html",
// files with an extension are untouched. SPA mode (SPA_MODE = true): every extensionless
// path is served by the app shell "/index.html".
//
// Test events:
//   "/about"          -> "/about/index.html"
//   "/docs/"          -> "/docs/index.html"
//   "/css/site.css"   -> "/css/site.css"
//   SPA mode, "/app/users/42" -> "/index.html"
const SPA_MODE = false;

function handler(event) {
  const request = event.request;
  const uri = request.uri;
  const last = uri.substring(uri.lastIndexOf('/') + 1);
  if (last.includes('.')) return request;
  if (SPA_MODE) {
    request.uri = '/index.html';
  } else if (uri.endsWith('/')) {
    request.uri = uri + 'index.html';
  } else {
    request.uri = uri + '/index.html';
  }
  return request;
}
