# frozen_string_literal: true

module Omnicore
  # omnicore:config: the plugin's own config section.
  module Config
    class << self
      # The value at +key+ (dotted keys walk nested objects) as text: strings verbatim,
      # anything else as JSON; +default+ when absent.
      def get(key, default = nil)
        status, data = Host.call("config.get", key.to_s)
        return default if status == -1

        raise STATUS_ERRORS.fetch(status, HostError).new("config.get: status #{status}", status) if status.negative?

        data.force_encoding(Encoding::UTF_8)
      end

      # The whole section as a Hash.
      def all = JSON.parse(get("", "{}"))
    end
  end
end
