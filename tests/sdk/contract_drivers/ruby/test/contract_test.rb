# The Ruby SDK's TestHost through the contract's requests (requests.jsonl beside plugin.rb,
# written by tests/sdk/test_contract_fakes.py): each outcome printed as "CONTRACT ok <JSON>"
# or "CONTRACT error <text>".
class ContractTest < Omnicore::Test
  def test_contract
    answer = nil
    host = Omnicore::TestHost.new
    File.foreach(File.expand_path("../requests.jsonl", __dir__)) do |line|
      req = JSON.parse(line)
      if req["reset"]
        host = Omnicore::TestHost.new
        next
      end
      if req.key?("sql")
        answer = req["sql"]
        columns = answer["columns"]
        # The TestHost takes { columns:, rows: } with columns as names or { name:, type: }.
        unless columns.is_a?(Array)
          puts "CONTRACT typed"
          next
        end
        host = Omnicore::TestHost.new(sql: ->(_call) { answer })
        status, data = host.send(:host_sql_query, "db", JSON.generate({ sql: "SELECT" }))
      else
        status, data = host.send(:host_redis_command, "cache", JSON.generate(req["redis"]))
      end
      puts "CONTRACT #{status.zero? ? 'ok' : 'error'} #{data.force_encoding('UTF-8')}"
    end
    $stdout.flush
  end
end
