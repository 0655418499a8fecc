# frozen_string_literal: true

module Omnicore
  # Every error the SDK raises.
  #
  #   Omnicore::Error
  #   └── Omnicore::HostError          a host function answered a status (ABI §3.1)
  #       ├── NotFound                 -1
  #       ├── Denied                   -2: the grant does not allow it
  #       ├── Invalid                  -3
  #       ├── Quota                    -4
  #       ├── Unavailable              -5
  #       └── TooLarge                 -6
  class Error < StandardError; end

  # A status from a host function, with the function's name in the message.
  class HostError < Error
    attr_reader :status

    def initialize(message, status = nil)
      super(message)
      @status = status
    end
  end

  class NotFound < HostError; end
  class Denied < HostError; end
  class Invalid < HostError; end
  class Quota < HostError; end
  class Unavailable < HostError; end
  class TooLarge < HostError; end

  STATUS_ERRORS = { -1 => NotFound, -2 => Denied, -3 => Invalid, -4 => Quota,
                    -5 => Unavailable, -6 => TooLarge }.freeze
  # The status names that open a §3.3 error message ("DENIED: host not allowed").
  STATUS_NAMES = { "NOT_FOUND" => NotFound, "DENIED" => Denied, "INVALID" => Invalid,
                   "QUOTA" => Quota, "UNAVAILABLE" => Unavailable, "TOO_LARGE" => TooLarge }.freeze
end
