# frozen_string_literal: true

module Omnicore
  # omnicore:redis: the allowed commands on a granted Redis connector, keys under the
  # plugin's prefix.
  module Redis
    def self.command(connector, cmd, *args)
      request = JSON.generate({ cmd: cmd.to_s.upcase, args: args })
      JSON.parse(Host.block!("redis.command", connector.to_s, request), quirks_mode: true)
    end
  end
end
