# frozen_string_literal: true

module Omnicore
  # omnicore:tasks: durable background calls of the plugin's own handlers.
  module Tasks
    class << self
      # Call +handler+ with +payload+ after +delay_ms+; returns the task id.
      def enqueue(handler, payload = "", delay_ms: 0)
        payload = JSON.generate(payload) unless payload.is_a?(String)
        Host.call!("tasks.enqueue", handler.to_s, payload, Host.int(delay_ms)).first
      end

      # True when the task was cancelled before it ran.
      def cancel(id) = Host.call!("tasks.cancel", Host.int(id)).first == 1
    end
  end
end
