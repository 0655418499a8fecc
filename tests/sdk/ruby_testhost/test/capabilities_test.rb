# omnicore's test host answers every capability the SDK covers with the host's own code.
class CapabilitiesTest < Omnicore::Test
  def test_tasks_and_events_are_recorded
    host = Omnicore::TestHost.new
    assert_equal({ "id" => 1, "cancelled" => true, "again" => false }, host.call_json(:later, { n: 1 }))
    assert_equal ["echo", '{"n":1}', 500, true], host.tasks.first.to_a
    assert_equal [["scheduled", '{"id":1}']], host.events
  end

  def test_http_answers_the_urls_given_and_no_other
    host = Omnicore::TestHost.new(http: { "https://api.example/x" => [201, "made"] },
                                  secrets: { "token" => "t0k" })
    assert_equal({ "status" => 201, "body" => "made" }, host.call_json(:fetch, { url: "https://api.example/x" }))
    error = assert_raises(Omnicore::TestHost::HandlerError) { host.call(:fetch, { url: "https://other.example/" }) }
    assert_match(/UNAVAILABLE: https:\/\/other.example\/: the TestHost has no http answer/, error.message)
  end

  def test_memory_and_vectors_are_the_hosts_stores
    host = Omnicore::TestHost.new
    assert_equal({ "memories" => ["likes green tea"], "nearest" => ["a"], "filtered" => ["b"] },
                 host.call_json(:recall, { query: "green tea" }))
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

  def test_a_query_answer_not_shaped_as_the_hosts_is_invalid
    host = Omnicore::TestHost.new(sql: ->(_call) { '{"columns":["name"],"rows":[["Ada"]]}' })
    error = assert_raises(Omnicore::TestHost::HandlerError) { host.call(:store, { name: "Ada" }) }
    assert_match(/INVALID: the test's answer is not shaped as the host's: a column is an object/, error.message)
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
    # Progress reaches nobody; the test's grant allows no question.
    assert_match(/\Afalse mcp.ask: DENIED: plugin 'plugin' may not ask the client/, Omnicore::TestHost.new.call(:tool))
  end
end
