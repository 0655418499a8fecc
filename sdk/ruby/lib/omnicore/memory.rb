# frozen_string_literal: true

module Omnicore
  # omnicore:memory: tiered text memories (0 working, 1 short-term, 2 long-term).
  module Memory
    TIERS = { working: 0, short: 1, long: 2 }.freeze

    class << self
      # Remember +text+; returns the memory's id.
      def remember(text, tier: :short, metadata: nil, ttl_s: nil, importance: nil)
        item = { text: text, metadata: metadata, ttl_s: ttl_s, importance: importance }.compact
        Host.call!("memory.remember", Host.int(TIERS.fetch(tier, tier)), JSON.generate(item)).first
      end

      # The memories best matching +query+: Hashes with id, tier, text, metadata, score.
      def recall(query, tiers: nil, limit: nil, filter: nil)
        request = { query: query, tiers: tiers&.map { |t| TIERS.fetch(t, t) }, limit: limit,
                    filter: filter }.compact
        JSON.parse(Host.call!("memory.recall", JSON.generate(request)).last)
      end

      # True when the memory existed.
      def forget(id) = Host.call!("memory.forget", Host.int(id)).first == 1
    end
  end
end
