# frozen_string_literal: true

require "omnicore/testing/redis"

module Omnicore
  # A stand-in for omnicore in a plugin's own tests (`omnicore test`): every capability the
  # SDK covers answers from this object, with the host's statuses (specs/abi.md §4).
  #
  #   host = Omnicore::TestHost.new(config: { "greeting" => "Hej" })
  #   host.call(:greet, '{"name": "Ada"}')  # => '{"message":"Hej, Ada!"}'
  #   host.logs                             # => [[:info, "greeting Ada"]]
  #
  # It keeps the log lines (+logs+), config and kv given, the tasks enqueued (+tasks+: it
  # runs none) and the events published (+events+). HTTP answers only the URLs given
  # (<tt>http: { url => [status, body] }</tt>, or "connector:path"); any other is DENIED.
  # SQL answers come from the block given (<tt>sql: ->(call) { ... }</tt>: it gets a SqlCall
  # and returns rows as an Array of Hashes for a query, +rows_affected+ (or a Hash) for an
  # execute; no database runs), every statement kept in +sql_calls+ (BEGIN, COMMIT and
  # ROLLBACK too). Redis is an in-memory server with the host's commands and key prefix
  # (+redis+: full key -> String, Hash, Array or Set; +redis_ttl+: seconds set, the clock does
  # not move). Memories (+memories+) are recalled by the words they share with the query,
  # vectors (+vectors+) searched exhaustively by cosine. The secrets given are the exposed
  # ones (nil: exposed but unset); any other name is DENIED. No MCP client waits: progress
  # (kept in +progress+) reaches nobody, a question is UNAVAILABLE.
  class TestHost
    # A handler's error result (what the host would report as GuestError).
    class HandlerError < Error; end

    # One statement the plugin ran.
    SqlCall = Struct.new(:connector, :sql, :params, :query, :tx)
    # One task enqueued; its id is its index in +tasks+ plus one.
    Task = Struct.new(:handler, :payload, :delay_ms, :cancelled)

    attr_reader :kv, :config, :logs, :tasks, :events, :memories, :vectors, :sql_calls,
                :redis, :redis_ttl, :redis_prefix, :progress

    def initialize(config: {}, kv: {}, secrets: {}, http: {}, sql: nil,
                   redis_prefix: "omnicore:plugin:")
      @config = config.transform_keys(&:to_s)
      @kv = kv.transform_keys(&:to_s).transform_values { |v| v.to_s.b }
      @secrets = secrets.transform_keys(&:to_s)
      @http = http.transform_keys(&:to_s)
      @sql = sql
      @logs = []
      @tasks = []
      @events = []
      @memories = {}
      @vectors = {}
      @sql_calls = []
      @open_tx = {}
      @redis = {}
      @redis_ttl = {}
      @redis_prefix = redis_prefix
      @progress = []
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

    # Answers host function +name+ ("kv.get") as omnicore would, from this object's state:
    # [status, data] as Host.call returns them (a §3.3 function: [0 or 1, data or message]).
    def answer(name, args)
      method = :"host_#{name.tr(".", "_")}"
      return [-5, "UNAVAILABLE: #{name} is not in the test host".b] unless respond_to?(method, true)

      send(method, *args)
    end

    private

    def with_host(input)
      host = self
      saved = Host.singleton_class.instance_method(:call)
      saved_input = Host.singleton_class.instance_method(:input)
      Host.define_singleton_method(:call) { |name, *args| host.answer(name, args) }
      Host.define_singleton_method(:input) { input }
      yield
    ensure
      Host.define_singleton_method(:call, saved)
      Host.define_singleton_method(:input, saved_input)
    end

    def int(bytes) = bytes.unpack1("q<")
    def text(bytes) = bytes.dup.force_encoding(Encoding::UTF_8)
    def found(data) = data.nil? ? [-1, "".b] : [data.bytesize, data.b]
    def failed(message) = [1, message.b]
    def block(value) = [0, (value.is_a?(String) ? value : JSON.generate(value)).b]

    def host_log_write(level, message)
      @logs << [Log::LEVELS.key(int(level)), text(message)]
      [0, "".b]
    end

    def host_log_enabled(_level) = [1, "".b]

    def host_config_get(key)
      value = key.empty? ? @config : text(key).split(".").reduce(@config) { |v, k| v.is_a?(Hash) ? v[k] : nil }
      found(value.nil? || value.is_a?(String) ? value : JSON.generate(value))
    end

    def host_kv_get(key) = found(@kv[text(key)])

    def host_kv_set(key, value)
      @kv[text(key)] = value.b
      [0, "".b]
    end

    def host_kv_delete(key) = [@kv.delete(text(key)) ? 1 : 0, "".b]

    def host_kv_incr(key, delta)
      current = @kv.fetch(text(key), "0")
      return [-3, "".b] unless current.match?(/\A-?\d+\z/)

      value = Integer(current) + int(delta)
      return [-3, "".b] unless value.between?(-2**63, 2**63 - 1)

      @kv[text(key)] = value.to_s.b
      [0, [value].pack("q<")]
    end

    def host_kv_list(prefix) = [0, JSON.generate(@kv.keys.select { |k| k.start_with?(text(prefix)) }.sort.first(1000)).b]

    def host_events_publish(topic, payload)
      @events << [text(topic), payload.b]
      [0, "".b]
    end

    def host_secrets_get(name)
      return [-2, "".b] unless @secrets.key?(text(name))

      found(@secrets[text(name)]&.to_s)
    end

    def host_tasks_enqueue(handler, payload, delay)
      return [-1, "".b] unless Omnicore.handlers.key?(text(handler))

      @tasks << Task.new(text(handler), payload.b, int(delay), false)
      [@tasks.size, "".b]
    end

    def host_tasks_cancel(id)
      task = @tasks[int(id) - 1] if int(id).positive?
      return [-1, "".b] unless task

      first = !task.cancelled
      task.cancelled = true
      [first ? 1 : 0, "".b]
    end

    def host_http_request(request, body)
      req = JSON.parse(request)
      target = req["url"] || "#{req["connector"]}:#{req["path"]}"
      return failed("DENIED: #{target} (the TestHost has no answer for it)") unless @http.key?(target)

      status, answer = @http[target]
      head = JSON.generate({ status: status, headers: {} })
      [0, [head.bytesize].pack("L<").b + head.b + answer.to_s.b]
    end

    def host_memory_remember(tier, item)
      entry = JSON.parse(item)
      return [-3, "".b] unless entry.is_a?(Hash) && entry["text"].is_a?(String) && (0..2).cover?(int(tier))

      id = (@memories.keys.max || 0) + 1
      @memories[id] = { "id" => id, "tier" => int(tier), "text" => entry["text"],
                        "metadata" => entry["metadata"] || {} }
      [id, "".b]
    rescue JSON::ParserError
      [-3, "".b]
    end

    def host_memory_recall(query)
      q = JSON.parse(query)
      words = q.fetch("query", "").to_s.downcase.split
      tiers = q.fetch("tiers", [0, 1, 2])
      filter = q["filter"] || {}
      hits = @memories.values.filter_map do |m|
        next unless tiers.include?(m["tier"]) && filter.all? { |k, v| m["metadata"][k] == v }

        score = (words & m["text"].downcase.split).size
        m.merge("score" => score.to_f) if score.positive? || words.empty?
      end
      hits = hits.sort_by { |m| [-m["score"], -m["id"]] }.first(q.fetch("limit", 10))
      [0, JSON.generate(hits).b]
    end

    def host_memory_forget(id) = [@memories.delete(int(id)) ? 1 : 0, "".b]

    def host_vectors_upsert(collection, id, floats, dim, metadata)
      vector = floats.byteslice(0, 4 * int(dim)).unpack("e*")
      coll = @vectors[text(collection)] ||= {}
      other = coll.reject { |k, _| k == text(id) }.values.first
      return [-3, "".b] if vector.empty? || (other && other[0].size != vector.size)

      coll[text(id)] = [vector, metadata.empty? ? {} : JSON.parse(metadata)]
      [0, "".b]
    end

    def host_vectors_search(collection, floats, dim, k) = host_vectors_query(collection, floats, dim, k, "")

    def host_vectors_query(collection, floats, dim, k, filter)
      coll = @vectors[text(collection)]
      return failed("NOT_FOUND: no vector collection '#{text(collection)}'") unless coll

      query = floats.byteslice(0, 4 * int(dim)).unpack("e*")
      wanted = filter.empty? ? {} : JSON.parse(filter)
      hits = coll.filter_map do |id, (vector, meta)|
        { "id" => id, "score" => cosine(query, vector).round(6), "metadata" => meta } if wanted.all? { |key, v| meta[key] == v }
      end
      block(hits.sort_by { |h| -h["score"] }.first(int(k)))
    end

    def host_vectors_delete(collection, id)
      coll = @vectors[text(collection)]
      return [-1, "".b] unless coll

      [coll.delete(text(id)) ? 1 : 0, "".b]
    end

    def cosine(a, b)
      dot = a.zip(b).sum { |x, y| x * (y || 0) }
      norm = Math.sqrt(a.sum { |x| x * x } * b.sum { |y| y * y })
      norm.zero? ? 0.0 : dot / norm
    end

    def host_sql_begin(connector)
      tx = @sql_calls.size + 1
      @open_tx[tx] = text(connector)
      @sql_calls << SqlCall.new(text(connector), "BEGIN", [], false, tx)
      [tx, "".b]
    end

    def host_sql_commit(tx) = end_tx(int(tx), "COMMIT")
    def host_sql_rollback(tx) = end_tx(int(tx), "ROLLBACK")

    def end_tx(tx, what)
      return [-1, "".b] unless @open_tx.key?(tx)

      @sql_calls << SqlCall.new(@open_tx.delete(tx), what, [], false, tx)
      [0, "".b]
    end

    def host_sql_query(connector, request) = sql_run(text(connector), request, true)
    def host_sql_execute(connector, request) = sql_run(text(connector), request, false)

    def sql_run(connector, request, query)
      req = JSON.parse(request)
      call = SqlCall.new(connector, req["sql"], req.fetch("params", []), query, req["tx"])
      if call.tx && @open_tx[call.tx] != connector
        return failed("INVALID: transaction #{call.tx} is not open on connector #{connector}")
      end

      @sql_calls << call
      return failed("UNAVAILABLE: connector #{connector}: the TestHost has no sql block") unless @sql

      answer = @sql.call(call)
      return block(answer.is_a?(Hash) ? answer : { rows_affected: Integer(answer || 0) }) unless query

      block(query_answer(answer))
    rescue StandardError => e
      failed(e.message.match?(/\A[A-Z_]+:/) ? e.message : "UNAVAILABLE: #{e.message}")
    end

    # A query's answer in the host's shape: from rows as Hashes (the columns are the first
    # row's keys), or from { columns:, rows: } (names or { name:, type: }; rows as Arrays, one
    # value per column: the host answers no other, and sends the columns with no rows too).
    def query_answer(answer)
      unless answer.is_a?(Hash)
        columns = answer.first&.keys || []
        return { columns: columns.map { |c| { name: c.to_s, type: "" } },
                 rows: answer.map { |row| columns.map { |c| row[c] } } }
      end
      columns = (answer[:columns] || answer["columns"] || []).map do |c|
        c.is_a?(Hash) ? { name: (c[:name] || c["name"]).to_s, type: (c[:type] || c["type"]).to_s } : { name: c.to_s, type: "" }
      end
      rows = answer[:rows] || answer["rows"] || []
      rows.each do |row|
        next if row.is_a?(Array) && row.size == columns.size

        raise ArgumentError, "INVALID: the test's rows: #{row.inspect} is not one value per column of #{columns.size}"
      end
      { columns: columns, rows: rows }
    end

    def host_mcp_progress(done, total, message)
      @progress << [done.unpack1("E"), total.unpack1("E"), text(message)]
      [-1, "".b] # no MCP client in a unit test: nobody listens
    end

    def host_mcp_ask(_request) = failed("UNAVAILABLE: no MCP client waits on this call (a unit test)")

    def host_redis_command(_connector, request)
      req = JSON.parse(request)
      cmd = req["cmd"].to_s.upcase
      given = req["args"] || []
      raise RedisFake::Refused, "INVALID: args must be an array" unless given.is_a?(Array)

      args = given.map { |a| a.is_a?(Hash) ? a["$bytes"].unpack1("m0") : a.to_s }
      [0, JSON.generate(RedisFake.new(self).run(cmd, args)).b]
    rescue RedisFake::Refused => e
      failed(e.message)
    end
  end
end
