# Every capability of the Ruby SDK from handlers, for `omnicore test`'s test host
# (tests/sdk/test_ruby.py runs test/capabilities_test.rb).
require "omnicore"

Omnicore.json_handler :later do |req|
  id = Omnicore::Tasks.enqueue(:echo, req, delay_ms: 500)
  Omnicore::Events.publish("scheduled", { id: id })
  { id: id, cancelled: Omnicore::Tasks.cancel(id), again: Omnicore::Tasks.cancel(id) }
end

Omnicore.handler(:echo) { |input| input }

Omnicore.json_handler :fetch do |req|
  response = Omnicore::HTTP.get(req["url"], headers: { "Authorization" => Omnicore::Secrets.get("token") })
  { status: response.status, body: response.body }
end

Omnicore.json_handler :recall do |req|
  Omnicore::Memory.remember("likes green tea", tier: :long)
  Omnicore::Memory.remember("owns a red bicycle")
  Omnicore::Vectors.upsert("docs", "a", [1.0, 0.0], { "kind" => "x" })
  Omnicore::Vectors.upsert("docs", "b", [0.0, 1.0], { "kind" => "y" })
  { memories: Omnicore::Memory.recall(req["query"]).map { |m| m["text"] },
    nearest: Omnicore::Vectors.search("docs", [0.9, 0.1], k: 1).map { |h| h["id"] },
    filtered: Omnicore::Vectors.search("docs", [0.9, 0.1], k: 2, filter: { "kind" => "y" }).map { |h| h["id"] } }
end

Omnicore.json_handler :store do |req|
  Omnicore::SQL.transaction("db") do |tx|
    Omnicore::SQL.execute("db", "INSERT INTO seen (name) VALUES ($1)", [req["name"]], tx: tx)
  end
  rows = Omnicore::SQL.query("db", "SELECT name FROM seen")["rows"]
  Omnicore::Redis.command("cache", "SET", "last", req["name"], "EX", 60)
  { rows: rows, visits: Omnicore::Redis.command("cache", "INCR", "visits"),
    last: Omnicore::Redis.command("cache", "GET", "last") }
end

Omnicore.json_handler :redis do |commands|
  commands.map do |cmd, *args|
    Omnicore::Redis.command("cache", cmd, *args)
  rescue Omnicore::HostError => e
    e.message
  end
end

Omnicore.handler :tool do
  sent = Omnicore::MCP.progress(1, 2, "half way")
  Omnicore::MCP.ask("roots/list")
rescue Omnicore::HostError => e
  "#{sent} #{e.message}"
end
