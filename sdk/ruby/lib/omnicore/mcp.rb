# frozen_string_literal: true

module Omnicore
  # omnicore:mcp: the MCP client that called this handler as a tool (specs/abi.md §4.13).
  # Outside MCP (the REST API, a job, `omnicore call`) nobody listens: progress reaches
  # nobody and a question is Unavailable, so a handler need not know how it was called.
  module MCP
    class << self
      # Report +done+ of +total+ (0: unknown) with a message to the client, if it asked for
      # progress: true when sent, false when nobody listens.
      def progress(done, total = 0, message = "")
        status, = Host.call("mcp.progress", Host.float(done), Host.float(total), message.to_s)
        return false if status == -1
        raise STATUS_ERRORS.fetch(status, HostError).new("mcp.progress: status #{status}", status) if status.negative?

        true
      end

      # Send MCP request +method+ ("elicitation/create", "sampling/createMessage",
      # "roots/list") with +params+ to the client and wait for its result (a Hash), at most
      # until the call's deadline. +key+ names the question (on MCP 2026-07-28 the questions go
      # out with the call's answer and the handler runs again with theirs: ask every question
      # before acting on any answer). Denied: the grant does not allow it; Unavailable: no
      # client waits on this call, it lacks the capability, or it did not answer in time.
      def ask(method, params = {}, key: nil)
        JSON.parse(Host.block!("mcp.ask", JSON.generate({ method: method, params: params, key: key }.compact)))
      end
    end
  end
end
