# frozen_string_literal: true

module Omnicore
  # A stand-in for omnicore in a plugin's own tests (`omnicore test`): log lines, config and
  # kv live in this object; other capabilities answer UNAVAILABLE.
  #
  #   host = Omnicore::TestHost.new(config: { "greeting" => "Hej" })
  #   host.call(:greet, '{"name": "Ada"}')  # => '{"message":"Hej, Ada!"}'
  #   host.logs                             # => [[:info, "greeting Ada"]]
  class TestHost
    # A handler's error result (what the host would report as GuestError).
    class HandlerError < Error; end

    attr_reader :kv, :config, :logs

    def initialize(config: {}, kv: {})
      @config = config.transform_keys(&:to_s)
      @kv = kv.transform_keys(&:to_s)
      @logs = []
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

    # Answers a host function as omnicore would, from this object's state.
    def answer(name, args)
      case name
      when "log.write" then @logs << [Log::LEVELS.key(args[0].unpack1("q<")), args[1].dup.force_encoding(Encoding::UTF_8)]
                            [0, ""]
      when "log.enabled" then [1, ""]
      when "config.get" then config_get(args[0])
      when "kv.get" then @kv.key?(args[0]) ? [@kv[args[0]].bytesize, @kv[args[0]].b] : [-1, ""]
      when "kv.set" then @kv[args[0].dup] = args[1].b
                         [0, ""]
      when "kv.delete" then [@kv.delete(args[0]) ? 1 : 0, ""]
      when "kv.incr" then kv_incr(args[0], args[1].unpack1("q<"))
      when "kv.list" then [0, JSON.generate(@kv.keys.select { |k| k.start_with?(args[0]) }.sort)]
      else [-5, "UNAVAILABLE: #{name} is not in the test host".b]
      end
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

    def config_get(key)
      value = key.empty? ? @config : key.split(".").reduce(@config) { |v, k| v.is_a?(Hash) ? v[k] : nil }
      return [-1, ""] if value.nil?

      text = value.is_a?(String) ? value : JSON.generate(value)
      [text.bytesize, text.b]
    end

    def kv_incr(key, delta)
      current = @kv.fetch(key, "0")
      return [-3, ""] unless current.match?(/\A-?\d+\z/)

      value = Integer(current) + delta
      @kv[key.dup] = value.to_s.b
      [0, [value].pack("q<")]
    end
  end
end
