# counter-ruby's handlers under the SDK's test host: `omnicore test plugins/counter/ruby`.
class CounterTest < Omnicore::Test
  def test_count_starts_at_the_configured_start_and_resets
    host = Omnicore::TestHost.new(config: { "start" => 10 })
    assert_equal({ "count" => 11 }, host.call_json(:count))
    assert_equal({ "count" => 16 }, host.call_json(:count, { by: 5 }))
    assert_equal({ "count" => 10 }, host.call_json(:reset))
    refute host.kv.key?("count")
  end

  def test_by_must_be_an_integer
    error = assert_raises(Omnicore::TestHost::HandlerError) { Omnicore::TestHost.new.call(:count, '{"by": "2"}') }
    assert_equal "by must be an integer", error.message
  end
end
