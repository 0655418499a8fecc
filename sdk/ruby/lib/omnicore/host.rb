# frozen_string_literal: true

require "js"

module Omnicore
  # The door to the host functions, through the interpreter's JS bridge as the build's glue
  # defines it (host/omnicore/toolchains/ruby/glue.py): +JS.global.call(:"A" + n, *args)+
  # calls host function n with String arguments (integers as 8 bytes little-endian) and
  # answers the status (8 bytes) followed by the data.
  module Host
    # In glue.py's HOST_FUNCTIONS order.
    FUNCTIONS = %w[
      log.write log.enabled config.get kv.get kv.set kv.delete kv.incr kv.list
      memory.remember memory.recall memory.forget
      vectors.upsert vectors.search vectors.delete vectors.query
      tasks.enqueue tasks.cancel http.request events.publish secrets.get
      sql.query sql.execute sql.begin sql.commit sql.rollback redis.command
      mcp.progress mcp.ask
      testing.reset testing.set_config testing.set_log_level testing.set_secret testing.kv_set
      testing.http_answer testing.sql_answer testing.logs testing.kv testing.events
      testing.tasks testing.sql_statements testing.redis_data
    ].each_with_index.to_h { |name, i| [name, (65 + i).chr.to_sym] }.freeze
    GLOBAL = JS.global

    class << self
      # The namespaces the build imported (set by the build's boot script).
      attr_accessor :namespaces

      # Call host function +name+ ("kv.get"); returns [status, data].
      def call(name, *args)
        namespace = name.split(".", 2).first
        unless namespaces.nil? || namespaces.include?(namespace)
          raise Denied.new("#{name}: this plugin was built without omnicore:#{namespace} " \
                           "(the build imports a capability when the sources name " \
                           "Omnicore::#{CAPABILITY_MODULES.fetch(namespace, namespace)})", -2)
        end
        call_unchecked(name, *args)
      end

      # Like #call, whatever the build imported (TestHost's omnicore:testing, which only the
      # runtime of `omnicore test` imports).
      def call_unchecked(name, *args)
        answer = GLOBAL.call(FUNCTIONS.fetch(name), *args).to_s.b
        [answer.unpack1("q<"), answer.byteslice(8..)]
      end

      # Like #call, raising the status's HostError when it is negative.
      def call!(name, *args)
        status, data = call(name, *args)
        raise STATUS_ERRORS.fetch(status, HostError).new("#{name}: status #{status}", status) if status.negative?

        [status, data]
      end

      # A §3.3 answer (data or an error message) as data, or the error raised.
      def block!(name, *args)
        failed, data = call(name, *args)
        return data if failed.zero?

        message = data.force_encoding(Encoding::UTF_8)
        raise STATUS_NAMES.fetch(message[/\A[A-Z_]+/], HostError).new("#{name}: #{message}")
      end

      # An integer argument.
      def int(value) = [Integer(value)].pack("q<")

      # A float argument.
      def float(value) = [Float(value)].pack("E")

      # The current call's input bytes.
      def input = GLOBAL[:"@"].to_s.b
    end

    CAPABILITY_MODULES = { "kv" => "KV", "http" => "HTTP", "sql" => "SQL", "mcp" => "MCP" }.freeze
  end
end
