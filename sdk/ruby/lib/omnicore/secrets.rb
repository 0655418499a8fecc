# frozen_string_literal: true

module Omnicore
  # omnicore:secrets: the secrets the operator exposed to this plugin.
  module Secrets
    # The secret's value, or nil when it is exposed but not set (Denied when not exposed).
    def self.get(name)
      status, data = Host.call("secrets.get", name.to_s)
      return nil if status == -1
      raise STATUS_ERRORS.fetch(status, HostError).new("secrets.get #{name}: status #{status}", status) if status.negative?

      data
    end
  end
end
