# frozen_string_literal: true

module Omnicore
  # omnicore:sql: parameterized statements on a granted database connector.
  module SQL
    class << self
      # {"columns" => [...], "rows" => [[...]]}
      def query(connector, sql, params = [], tx: nil)
        JSON.parse(Host.block!("sql.query", connector.to_s, request(sql, params, tx)))
      end

      # {"rows_affected" => n, "last_insert_id" => id?}
      def execute(connector, sql, params = [], tx: nil)
        JSON.parse(Host.block!("sql.execute", connector.to_s, request(sql, params, tx)))
      end

      # Run the block in a transaction (its id is the block's argument): committed when the
      # block returns, rolled back when it raises.
      def transaction(connector)
        tx = Host.call!("sql.begin", connector.to_s).first
        begin
          result = yield tx
        rescue Exception # rubocop:disable Lint/RescueException -- roll back, then re-raise
          Host.call("sql.rollback", Host.int(tx))
          raise
        end
        Host.call!("sql.commit", Host.int(tx))
        result
      end

      private

      def request(sql, params, tx) = JSON.generate({ sql: sql, params: params, tx: tx }.compact)
    end
  end
end
