# The counter example: `count` adds `by` (default 1) to a counter that starts at config
# `start`; `reset` puts it back. The count lives in kv (key `count`, the distance from
# `start`), so it survives a restart and every instance in the pool shares it: KV.incr is
# atomic in the host.
require "omnicore"

KEY = "count"

def start
  raw = JSON.parse(Omnicore::Config.get("start", "0"))
  raise ArgumentError, "config 'start' must be an integer, got #{raw.inspect}" unless raw.is_a?(Integer)

  raw
end

Omnicore.json_handler :count, title: "Count" do |request|
  request ||= {}
  raise ArgumentError, 'invalid JSON input: expected an object like {"by": 2}' unless request.is_a?(Hash)

  by = request.fetch("by", 1)
  raise ArgumentError, "by must be an integer" unless by.is_a?(Integer)

  value = start + Omnicore::KV.incr(KEY, by)
  Omnicore::Log.debug("count += #{by} -> #{value}")
  { count: value }
end

Omnicore.json_handler :reset, title: "Reset the counter", destructive: true do |_request|
  Omnicore::KV.delete(KEY)
  Omnicore::Log.info("counter reset to #{start}")
  { count: start }
end
