//! HTTP routes with the Rust SDK (docs/guides/http-routes.md): `on_event` receives a signed
//! webhook (the host checked the signature before the call) and `hello` is a small JSON
//! endpoint: `GET /hello/{name}?greeting=Hej` -> `{"message": "Hej, Ada!"}`.

use omnicore::route::{Request, Response};
use omnicore::{route_handler, Error};
use serde_json::{json, Value};

fn on_event(req: Request) -> Result<Response, Error> {
    let event: Value = match req.json() {
        Ok(v) => v,
        Err(_) => {
            return Ok(Response::json(
                400,
                &json!({"error": "the body is not JSON"}),
            ))
        }
    };
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    omnicore::log::info(&format!("{} event via {}", kind, req.auth_mode));
    Ok(Response::json(200, &json!({"received": kind})))
}

fn hello(req: Request) -> Result<Response, Error> {
    let name = req.param("name").unwrap_or("world");
    let greeting = req.query_param("greeting").unwrap_or("Hello");
    Ok(Response::json(
        200,
        &json!({ "message": format!("{}, {}!", greeting, name) }),
    )
    .header("cache-control", "no-store"))
}

route_handler! {
    /// Receives a signed webhook delivery.
    on_event => on_event,
    /// Greets the name in the path.
    hello => hello,
}
