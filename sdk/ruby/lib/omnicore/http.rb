# frozen_string_literal: true

module Omnicore
  # omnicore:http: outbound requests to granted hosts, or through a named connector.
  module HTTP
    # A response: status, headers (Hash) and body (binary String).
    Response = Struct.new(:status, :headers, :body) do
      def json = JSON.parse(body)
    end

    class << self
      # +url+ for a direct request, or +connector:+ and +path:+ through a connector.
      def request(method, url = nil, connector: nil, path: nil, headers: {}, body: "", timeout_ms: nil)
        req = { method: method.to_s.upcase, url: url, connector: connector, path: path,
                headers: headers, timeout_ms: timeout_ms }.compact
        body = JSON.generate(body) unless body.is_a?(String)
        data = Host.block!("http.request", JSON.generate(req), body)
        head_len = data.unpack1("L<")
        head = JSON.parse(data.byteslice(4, head_len))
        Response.new(head["status"], head["headers"], data.byteslice((4 + head_len)..))
      end

      def get(url = nil, **options) = request("GET", url, **options)
      def post(url = nil, **options) = request("POST", url, **options)
    end
  end
end
