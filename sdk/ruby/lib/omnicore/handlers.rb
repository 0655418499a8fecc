# frozen_string_literal: true

module Omnicore
  # A declared handler: its name, whether it speaks JSON, and the block.
  Handler = Struct.new(:name, :json, :options, :block) do
    def invoke(input)
      if json
        request = input.empty? ? nil : JSON.parse(input.force_encoding(Encoding::UTF_8))
        JSON.generate(block.call(request))
      else
        output = block.call(input)
        output.nil? ? "" : String(output)
      end
    end
  end

  @handlers = {}

  class << self
    # The handlers declared so far, by name.
    attr_reader :handlers

    # Declare a handler that takes the input bytes (a binary String) and returns a String.
    # With +route: true+ it answers HTTP: the block takes a Route::Request and returns a
    # Route::Response (omnicore/route.rb).
    def handler(name, route: false, **options, &block)
      raise ArgumentError, "handler #{name} needs a block" unless block

      @handlers[name.to_s] = Handler.new(name.to_s, false, options, route ? Route.wrap(block) : block)
    end

    # Declare a handler that takes parsed JSON (nil for empty input) and returns something
    # JSON.generate can write.
    def json_handler(name, **options, &block)
      raise ArgumentError, "handler #{name} needs a block" unless block

      @handlers[name.to_s] = Handler.new(name.to_s, true, options, block)
    end
  end

  # What the glue calls: handler number i (the order the build exported them in) on the
  # current input, answering "\x00" + output or "\x01" + an error message.
  class Dispatcher
    OK = "\x00".b.freeze
    FAILED = "\x01".b.freeze

    def initialize(names)
      missing = names - Omnicore.handlers.keys
      raise Error, "handlers named in the sources but not declared: #{missing.join(", ")}" unless missing.empty?

      @handlers = names.map { |name| Omnicore.handlers.fetch(name) }
    end

    def call(index)
      OK + @handlers.fetch(index).invoke(Host.input).b
    rescue JSON::ParserError => e
      FAILED + "invalid JSON input: #{e.message}".b
    rescue StandardError => e
      Log.error("#{e.class}: #{e.message}\n  #{Array(e.backtrace).first(5).join("\n  ")}") unless e.is_a?(ArgumentError)
      FAILED + e.message.b
    rescue Exception => e # rubocop:disable Lint/RescueException -- nothing may pass the glue
      FAILED + "#{e.class}: #{e.message}".b
    end
  end
end
