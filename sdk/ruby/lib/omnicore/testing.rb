# frozen_string_literal: true

module Omnicore
  # omnicore in a plugin's own tests (`omnicore test`): the tests run in the plugin's
  # interpreter on omnicore's test host (omnicore.toolchains.testhost), where every capability
  # the SDK calls is the host's own code over in-memory services, every one granted. This
  # object sets that host up and reads back what the handlers did through its
  # omnicore:testing imports.
  #
  #   host = Omnicore::TestHost.new(config: { "greeting" => "Hej" })
  #   host.call(:greet, '{"name": "Ada"}')  # => '{"message":"Hej, Ada!"}'
  #   host.logs                             # => [[:info, "greeting Ada"]]
  #
  # There is one host: a new TestHost starts it afresh (no config, secrets, log, kv, tasks,
  # events, memories, vectors, statements or Redis keys), and the one before reads the new.
  # Read back: +logs+, +kv+, +tasks+ (none runs), +events+, +sql_calls+ (BEGIN, COMMIT and
  # ROLLBACK too), +redis+ (full key -> String, Hash or Array; a set as a sorted Array) and
  # +redis_ttl+ (seconds set; the clock does not move).
  #
  # Kept here, since only the test knows them, and handed to the host just before each
  # request: the HTTP answers (<tt>http: { url => [status, body] }</tt>, or "connector:path";
  # any other request is UNAVAILABLE) and the SQL block (<tt>sql: ->(call) { ... }</tt>: it
  # gets a SqlCall and returns rows as an Array of Hashes or { columns:, rows: } for a query,
  # +rows_affected+ (or a Hash) for an execute, or the host's JSON as a String; what it raises
  # fails the statement UNAVAILABLE). The host's own code reads the request, refuses what it
  # refuses and checks a query's answer for the host's shape. The secrets given are the
  # exposed ones (nil: exposed but unset); any other name is DENIED. No MCP client waits:
  # progress reaches nobody, a question is DENIED.
  class TestHost
    # A handler's error result (what the host would report as GuestError).
    class HandlerError < Error; end

    # One statement the plugin ran (+query+: true for a query, false for an execute; nil in
    # +sql_calls+, which the host logs without it).
    SqlCall = Struct.new(:connector, :sql, :params, :query, :tx)
    # One task enqueued; its id is its index in +tasks+ plus one.
    Task = Struct.new(:handler, :payload, :delay_ms, :cancelled)

    # The Redis key prefix the host gives the plugin.
    REDIS_PREFIX = "omnicore:plugin:"

    def initialize(config: {}, kv: {}, secrets: {}, http: {}, sql: nil)
      @http = http.transform_keys(&:to_s)
      @sql = sql
      control("reset")
      control("set_config", JSON.generate(config))
      kv.each { |key, value| control("kv_set", key.to_s, value.to_s.b) }
      secrets.each { |name, value| control("set_secret", name.to_s, value.to_s, Host.int(value.nil? ? 0 : 1)) }
    end

    # Call handler +name+ with +input+ (a String, or an object sent as JSON) as the host
    # would; its output, or HandlerError with its message.
    def call(name, input = "")
      input = JSON.generate(input) unless input.is_a?(String)
      handler = Omnicore.handlers.fetch(name.to_s) { raise KeyError, "no handler #{name}" }
      answer = with_host(input.b) { Dispatcher.allocate.tap { |d| d.instance_variable_set(:@handlers, [handler]) }.call(0) }
      raise HandlerError, answer.byteslice(1..).force_encoding(Encoding::UTF_8) if answer.getbyte(0) == 1

      answer.byteslice(1..)
    end

    # call, with the output parsed as JSON.
    def call_json(name, input = nil) = JSON.parse(call(name, input.nil? ? "" : input))

    # Lines below +level+ (:info by default, as the host's grant) are dropped.
    def log_level=(level)
      control("set_log_level", Host.int(Log::LEVELS.fetch(level)))
    end

    # [level, message] of each line logged, oldest first.
    def logs = read("logs").map { |level, message| [Log::LEVELS.key(level), message] }

    # The kv store: key -> value (binary).
    def kv = read("kv").transform_values { |v| v.unpack1("m0") }

    # The tasks enqueued, oldest first.
    def tasks = read("tasks").map { |_id, handler, payload, delay, cancelled| Task.new(handler, payload.unpack1("m0"), delay, cancelled) }

    # [topic, payload] of each event published, oldest first.
    def events = read("events").map { |topic, payload| [topic, payload.unpack1("m0")] }

    # The statements the host ran, oldest first (params as the host logs them).
    def sql_calls = read("sql_statements").map { |conn, sql, params, tx| SqlCall.new(conn, sql, params, nil, tx) }

    # Redis: full key -> value.
    def redis = read("redis_data")["data"]

    # Redis: full key -> seconds to live, for the keys that expire.
    def redis_ttl = read("redis_data")["ttl"]

    def redis_prefix = REDIS_PREFIX

    # Answers what only the test knows before host function +name+ runs (called by Host.call
    # while a handler runs).
    def before(name, args)
      case name
      when "http.request" then answer_http(JSON.parse(args[0]))
      when "sql.query", "sql.execute" then answer_sql(args[0], JSON.parse(args[1]), name == "sql.query")
      end
    end

    private

    def control(name, *args) = Host.call_unchecked("testing.#{name}", *args)

    def read(name)
      status, data = control(name)
      raise HostError.new("testing.#{name}: status #{status}", status) if status.negative?

      JSON.parse(data.force_encoding(Encoding::UTF_8))
    end

    def with_host(input)
      host = self
      saved = Host.singleton_class.instance_method(:call)
      saved_input = Host.singleton_class.instance_method(:input)
      Host.define_singleton_method(:call) do |name, *args|
        host.before(name, args)
        saved.bind_call(self, name, *args)
      end
      Host.define_singleton_method(:input) { input }
      yield
    ensure
      Host.define_singleton_method(:call, saved)
      Host.define_singleton_method(:input, saved_input)
    end

    def answer_http(req)
      target = req["url"] || "#{req["connector"]}:#{req["path"]}"
      unless @http.key?(target)
        return control("http_answer", "UNAVAILABLE: #{target}: the TestHost has no http answer for it", "", Host.int(1))
      end

      status, body = @http[target]
      control("http_answer", JSON.generate({ status: status, headers: [] }), body.to_s.b, Host.int(0))
    end

    def answer_sql(connector, req, query)
      unless @sql
        return control("sql_answer", "UNAVAILABLE: connector #{connector}: the TestHost has no sql block", Host.int(1))
      end

      answer = @sql.call(SqlCall.new(connector, req["sql"], req.fetch("params", []), query, req["tx"]))
      text = if answer.is_a?(String) then answer
             elsif query then JSON.generate(query_answer(answer))
             else JSON.generate(answer.is_a?(Hash) ? answer : { rows_affected: Integer(answer || 0) })
             end
      control("sql_answer", text, Host.int(0))
    rescue StandardError => e
      control("sql_answer", e.message.match?(/\A[A-Z_]+:/) ? e.message : "UNAVAILABLE: #{e.message}", Host.int(1))
    end

    # A query's answer in the host's shape from rows as Hashes (the columns are the first
    # row's keys, their type ""), or { columns:, rows: } with columns as names or
    # { name:, type: } (the host checks the rest: one value per column).
    def query_answer(answer)
      unless answer.is_a?(Hash)
        columns = answer.first&.keys || []
        return { columns: columns.map { |c| { name: c.to_s, type: "" } },
                 rows: answer.map { |row| columns.map { |c| row[c] } } }
      end
      columns = (answer[:columns] || answer["columns"] || []).map do |c|
        c.is_a?(Hash) ? { name: (c[:name] || c["name"]).to_s, type: (c[:type] || c["type"]).to_s } : { name: c.to_s, type: "" }
      end
      { columns: columns, rows: answer[:rows] || answer["rows"] || [] }
    end
  end
end
