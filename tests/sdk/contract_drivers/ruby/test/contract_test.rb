# The Ruby SDK on omnicore's test host through the contract's requests (requests.jsonl beside
# plugin.rb, written by tests/sdk/test_contract_fakes.py): each outcome printed as
# "CONTRACT ok <JSON>" or "CONTRACT error <text>".
class ContractTest < Omnicore::Test
  def test_contract
    answer = nil
    host = Omnicore::TestHost.new(sql: ->(_call) { answer })
    File.foreach(File.expand_path("../requests.jsonl", __dir__)) do |line|
      req = JSON.parse(line)
      if req["reset"]
        host = Omnicore::TestHost.new(sql: ->(_call) { answer })
      elsif req.key?("sql")
        answer = JSON.generate(req["sql"]) # the host's JSON as the test wrote it: the host checks it
        puts "CONTRACT #{host.call(:query)}"
      else
        puts "CONTRACT #{host.call(:redis, JSON.generate(req["redis"]))}"
      end
    end
    $stdout.flush
  end
end
