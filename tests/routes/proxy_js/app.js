// A wasi:http/proxy component as componentize-js users write one (the fetch event), nothing
// of omnicore in it: `.../hello` says hello, any other path echoes the method, the path with
// its query, a header and the body.
addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

let served = 0;

async function handle(request) {
  served += 1;
  const url = new URL(request.url);
  if (url.pathname.endsWith("/hello")) {
    return new Response("hello from js", { headers: { "content-type": "text/plain" } });
  }
  const body = await request.text();
  const test = request.headers.get("x-test") ?? "-";
  return new Response(
    `${request.method} ${url.pathname}${url.search} ${body.length} bytes; x-test=${test}; ` +
      `served=${served}; body=${body}`,
    { status: 201, headers: { "content-type": "text/plain", "x-app": "proxy-js" } },
  );
}
