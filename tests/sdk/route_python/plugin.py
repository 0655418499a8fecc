"""Route-helper fixture (tests/sdk/test_route_helpers.py): every SDK's fixture answers the
same."""

from omnicore_plugin import routes
from omnicore_plugin.routes import Request, Response


@routes.handler
def echo(req: Request) -> Response:
    """201, what the request carried in headers, and the request body echoed byte for byte."""
    return (Response(201, {"content-type": "application/octet-stream"}, req.body)
            .header("x-method", req.method)
            .header("x-path", req.path)
            .header("x-query", req.query)
            .header("x-first", req.query_param("x", "-") or "")
            .header("x-all", ",".join(req.query_all("x")))
            .header("x-id", req.params.get("id", "-"))
            .header("x-agent", req.header("User-Agent", "-") or "")
            .header("x-route", req.route)
            .header("set-cookie", ["a=1", "b=2"]))


@routes.handler
def hello(req: Request) -> Response:
    return Response.text(f"hello {req.params.get('name', 'world')}")


@routes.handler
def info(req: Request) -> Response:
    return Response.json({"id": req.params.get("id"), "n": req.json()["n"]}, 202)


@routes.handler
def fail(req: Request) -> Response:
    raise RuntimeError("the database is down")
