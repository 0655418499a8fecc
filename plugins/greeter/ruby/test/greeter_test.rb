# greeter-ruby's handler under the SDK's test host: `omnicore test plugins/greeter/ruby`.
class GreeterTest < Omnicore::Test
  def test_greets_with_the_configured_greeting
    host = Omnicore::TestHost.new(config: { "greeting" => "Hej" })
    assert_equal({ "message" => "Hej, Zoë!" }, host.call_json(:greet, { name: "Zoë" }))
    assert_includes host.logs, [:info, "greeting Zoë"]
  end

  def test_refuses_what_is_not_a_name
    host = Omnicore::TestHost.new
    assert_equal "name must be a string", assert_raises(Omnicore::TestHost::HandlerError) { host.call(:greet, '{"name": 5}') }.message
    assert_match(/\Ainvalid JSON input/, assert_raises(Omnicore::TestHost::HandlerError) { host.call(:greet, "[1]") }.message)
  end
end
