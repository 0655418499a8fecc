# frozen_string_literal: true

module Omnicore
  # omnicore:kv: the plugin's durable key-value store.
  module KV
    class << self
      # The value (a binary String), or nil.
      def get(key)
        status, data = Host.call("kv.get", key.to_s)
        return nil if status == -1
        raise STATUS_ERRORS.fetch(status, HostError).new("kv.get: status #{status}", status) if status.negative?

        data
      end

      def set(key, value)
        Host.call!("kv.set", key.to_s, value.to_s)
        value
      end
      alias []= set

      def [](key) = get(key)

      # True when the key existed.
      def delete(key) = Host.call!("kv.delete", key.to_s).first == 1

      # Add +by+ to the integer at +key+ (absent = 0) atomically; the new value.
      def incr(key, by = 1) = Host.call!("kv.incr", key.to_s, Host.int(by)).last.unpack1("q<")

      # The keys starting with +prefix+, sorted (at most 1,000).
      def list(prefix = "") = JSON.parse(Host.call!("kv.list", prefix.to_s).last)
    end
  end
end
