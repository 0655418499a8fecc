# frozen_string_literal: true

module Omnicore
  # omnicore:vectors: named collections of f32 vectors (cosine similarity).
  module Vectors
    class << self
      def upsert(collection, id, vector, metadata = nil)
        Host.call!("vectors.upsert", collection.to_s, id.to_s, vector.pack("e*"),
                   Host.int(vector.size), metadata ? JSON.generate(metadata) : "")
        nil
      end

      # Hashes with id, score and metadata, best first (at most +k+); +filter+ keeps the
      # vectors whose metadata has every key-value pair of it.
      def search(collection, vector, k: 10, filter: nil)
        data = if filter
                 Host.block!("vectors.query", collection.to_s, vector.pack("e*"),
                             Host.int(vector.size), Host.int(k), JSON.generate(filter))
               else
                 Host.block!("vectors.search", collection.to_s, vector.pack("e*"),
                             Host.int(vector.size), Host.int(k))
               end
        JSON.parse(data)
      end

      # True when the vector existed.
      def delete(collection, id) = Host.call!("vectors.delete", collection.to_s, id.to_s).first == 1
    end
  end
end
