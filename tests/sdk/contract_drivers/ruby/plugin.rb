# The contract's driver (tests/sdk/test_contract_fakes.py): a redis request or an SQL query
# through the SDK's host functions as a plugin makes them, on omnicore's test host; the
# outcome answered as "ok <JSON>" or "error <text>".
require "omnicore"

# What the build imports (the raw calls below name no capability module).
USES = [Omnicore::Redis, Omnicore::SQL].freeze

def report(name, *args)
  status, data = Omnicore::Host.call(name, *args)
  "#{status.zero? ? 'ok' : 'error'} #{data.force_encoding('UTF-8')}"
end

Omnicore.handler(:redis) { |input| report("redis.command", "cache", input) }
Omnicore.handler(:query) { report("sql.query", "db", JSON.generate({ sql: "SELECT", params: [] })) }
