# The test host answers every capability the SDK covers.
class CapabilitiesTest < Omnicore::Test
  def test_tasks_and_events_are_recorded
    host = Omnicore::TestHost.new
    assert_equal({ "id" => 1, "cancelled" => true, "again" => false }, host.call_json(:later, { n: 1 }))
    assert_equal ["echo", '{"n":1}', 500, true], host.tasks.first.to_a
    assert_equal [["scheduled", '{"id":1}']], host.events
  end

  def test_http_answers_the_urls_given_and_denies_others
    host = Omnicore::TestHost.new(http: { "https://api.example/x" => [201, "made"] },
                                  secrets: { "token" => "t0k" })
    assert_equal({ "status" => 201, "body" => "made" }, host.call_json(:fetch, { url: "https://api.example/x" }))
    error = assert_raises(Omnicore::TestHost::HandlerError) { host.call(:fetch, { url: "https://other.example/" }) }
    assert_match(/DENIED: https:\/\/other.example\//, error.message)
  end

  def test_memory_and_vectors_in_memory
    host = Omnicore::TestHost.new
    assert_equal({ "memories" => ["likes green tea"], "nearest" => ["a"], "filtered" => ["b"] },
                 host.call_json(:recall, { query: "green tea" }))
    assert_equal 2, host.memories.size
  end

  def test_sql_answers_from_the_block_and_redis_in_memory
    host = Omnicore::TestHost.new(sql: ->(call) { call.query ? [{ "name" => "Ada" }] : 1 })
    assert_equal({ "rows" => [["Ada"]], "visits" => 1, "last" => "Ada" }, host.call_json(:store, { name: "Ada" }))
    assert_equal %w[BEGIN INSERT COMMIT SELECT], host.sql_calls.map { |c| c.sql.split.first }
    assert_equal ["Ada"], host.sql_calls[1].params
    assert_equal({ "omnicore:plugin:last" => "Ada", "omnicore:plugin:visits" => "1" }, host.redis)
    assert_equal({ "omnicore:plugin:last" => 60 }, host.redis_ttl)
    error = assert_raises(Omnicore::TestHost::HandlerError) { Omnicore::TestHost.new.call(:store, { name: "Bo" }) }
    assert_match(/UNAVAILABLE: connector db/, error.message)
  end

  def test_redis_keeps_hashes_lists_and_sets_and_refuses_what_the_host_refuses
    host = Omnicore::TestHost.new
    replies = host.call_json(:redis, [%w[HSET h a 1 b 2], %w[HGETALL h], %w[RPUSH l x y z], %w[LRANGE l 0 -2],
                                      %w[LTRIM l 1 -1], %w[LPOP l], %w[SADD s m n m], %w[SMEMBERS s], %w[GET h],
                                      %w[FLUSHALL x], %w[INCR h]])
    assert_equal [2, { "a" => "1", "b" => "2" }, 3, %w[x y], "OK", "y", 2, %w[m n]], replies.first(8)
    assert_match(/\Aredis.command: INVALID: WRONGTYPE/, replies[8])
    assert_match(/DENIED: redis command 'FLUSHALL' is not allowed/, replies[9])
    assert_match(/INVALID: WRONGTYPE/, replies[10])
    assert_equal %w[z], host.redis["omnicore:plugin:l"]
  end

  def test_no_mcp_client_listens
    host = Omnicore::TestHost.new
    assert_equal "false mcp.ask: UNAVAILABLE: no MCP client waits on this call (a unit test)", host.call(:tool)
    assert_equal [[1.0, 2.0, "half way"]], host.progress
  end
end
