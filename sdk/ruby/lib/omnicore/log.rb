# frozen_string_literal: true

module Omnicore
  # omnicore:log: lines in the host's log and the plugin's ring buffer.
  module Log
    LEVELS = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 }.freeze

    class << self
      LEVELS.each do |name, level|
        define_method(name) { |message| write(level, message) }
      end

      # Would a line at +level+ be kept? (skip building costly messages)
      def enabled?(level) = Host.call("log.enabled", Host.int(LEVELS.fetch(level))).first == 1

      private

      def write(level, message) = Host.call("log.write", Host.int(level), message.to_s)
    end
  end
end
