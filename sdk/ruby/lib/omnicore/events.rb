# frozen_string_literal: true

module Omnicore
  # omnicore:events: publish on a topic (the host prefixes plugin.<name>.).
  module Events
    def self.publish(topic, payload)
      payload = JSON.generate(payload) unless payload.is_a?(String)
      Host.call!("events.publish", topic.to_s, payload)
      nil
    end
  end
end
