// Route-helper fixture (tests/sdk/test_route_helpers.py): every SDK's fixture answers the same.
import { route, RouteResponse } from "omnicore";

// 201, what the request carried in headers, and the request body echoed byte for byte.
export const echo = route((req) => new RouteResponse(201, { "content-type": "application/octet-stream" }, req.body)
  .header("x-method", req.method)
  .header("x-path", req.path)
  .header("x-query", req.query)
  .header("x-first", req.queryParam("x") ?? "-")
  .header("x-all", req.queryAll("x").join(","))
  .header("x-id", req.params.id ?? "-")
  .header("x-agent", req.header("User-Agent") ?? "-")
  .header("x-route", req.route)
  .header("set-cookie", ["a=1", "b=2"]));

export const hello = route((req) => RouteResponse.text(`hello ${req.params.name ?? "world"}`));

export const info = route((req) => RouteResponse.json({ id: req.params.id, n: req.json().n }, 202));

export const fail = route(() => { throw new Error("the database is down"); });
