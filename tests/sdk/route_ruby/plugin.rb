# Route-helper fixture (tests/sdk/test_route_helpers.py): every SDK's fixture answers the same.
require "omnicore"

Response = Omnicore::Route::Response

# 201, what the request carried in headers, and the request body echoed byte for byte.
Omnicore.handler :echo, route: true do |req|
  Response.new(201, { "content-type" => "application/octet-stream" }, req.body)
          .header("x-method", req.method)
          .header("x-path", req.path)
          .header("x-query", req.query)
          .header("x-first", req.query_param("x") || "-")
          .header("x-all", req.query_all("x").join(","))
          .header("x-id", req.params.fetch("id", "-"))
          .header("x-agent", req.header("User-Agent") || "-")
          .header("x-route", req.route)
          .header("set-cookie", ["a=1", "b=2"])
end

Omnicore.handler :hello, route: true do |req|
  Response.text("hello #{req.params.fetch("name", "world")}")
end

Omnicore.handler :info, route: true do |req|
  Response.json({ id: req.params["id"], n: req.json.fetch("n") }, 202)
end

Omnicore.handler :fail, route: true do |_req|
  raise "the database is down"
end
