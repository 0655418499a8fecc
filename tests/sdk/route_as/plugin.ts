// Route-helper fixture (tests/sdk/test_route_helpers.py): every SDK's fixture answers the same.
import { Json, Request, Response, route } from "omnicore";

function orDash(value: string | null): string {
  return value != null ? value : "-";
}

// 201, what the request carried in headers, and the request body echoed byte for byte.
export function echo(ptr: usize, len: usize): u64 {
  return route(ptr, len, (req: Request): Response => new Response(201)
    .header("content-type", "application/octet-stream")
    .header("x-method", req.method)
    .header("x-path", req.path)
    .header("x-query", req.query)
    .header("x-first", orDash(req.queryParam("x")))
    .header("x-all", req.queryAll("x").join(","))
    .header("x-id", orDash(req.param("id")))
    .header("x-agent", orDash(req.header("User-Agent")))
    .header("x-route", req.route)
    .header("set-cookie", "a=1")
    .header("set-cookie", "b=2")
    .bytes(req.body));
}

export function hello(ptr: usize, len: usize): u64 {
  return route(ptr, len, (req: Request): Response => Response.text("hello " + orDash(req.param("name", "world"))));
}

export function info(ptr: usize, len: usize): u64 {
  return route(ptr, len, (req: Request): Response => {
    const body = req.json();
    const n = body != null ? body.get("n") : null;
    if (n == null || !n.isInteger()) return Response.error("the body is not {\"n\": integer}");
    return Response.json(Json.object().set("id", Json.str(orDash(req.param("id")))).set("n", Json.int(n.asInt())), 202);
  });
}

export function fail(ptr: usize, len: usize): u64 {
  return route(ptr, len, (req: Request): Response => Response.error("the database is down"));
}
