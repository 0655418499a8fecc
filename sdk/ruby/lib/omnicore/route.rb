# frozen_string_literal: true

module Omnicore
  # HTTP route handlers (specs/http-routes.md §2, §3, §8): a handler declared with
  # +route: true+ answers the HTTP requests an operator maps to it.
  #
  #   Omnicore.handler :hello, route: true do |req|
  #     Omnicore::Route::Response.text("hello #{req.params.fetch("name", "world")}")
  #   end
  #
  # The block gets a Request (the host's request envelope decoded) and returns a Response,
  # sent as the response block. A malformed envelope is answered 400 (the block is not
  # called) and an exception the block raises 500 with a short text body (its message goes
  # to the plugin's log, never to the client): the call itself never fails.
  module Route
    # The input is not a request envelope (the message says why).
    class Malformed < StandardError; end

    # An HTTP request on a route: header names lower-case, the body a binary String.
    class Request
      attr_reader :method, :path, :query, :query_params, :params, :headers, :body, :route, :url,
                  :remote, :auth

      def initialize(method:, path:, query: "", query_params: {}, params: {}, headers: {}, body: "".b,
                     route: "", url: "", remote: "", auth: { "mode" => "public" })
        @method = method
        @path = path
        @query = query
        @query_params = query_params
        @params = params
        @headers = headers
        @body = body
        @route = route
        @url = url
        @remote = remote
        @auth = auth
      end

      # A header's value (the name in any case), or nil.
      def header(name) = headers[name.to_s.downcase]

      # The first value of query parameter +name+, or nil.
      def query_param(name) = query_params.fetch(name.to_s, []).first

      # Every value of query parameter +name+, in order ([] when absent).
      def query_all(name) = query_params.fetch(name.to_s, []).dup

      # The body as UTF-8 text (invalid bytes replaced).
      def text = body.dup.force_encoding(Encoding::UTF_8).scrub

      # The body parsed as JSON (JSON::ParserError when it is not).
      def json = JSON.parse(text)
    end

    # A route's answer: status, headers (name => value, or an Array sent once per value, as
    # set-cookie needs) and the body.
    class Response
      attr_accessor :status, :headers, :body

      def initialize(status = 200, headers = {}, body = "")
        @status = status
        @headers = headers.to_h { |name, value| [name.to_s.downcase, value] }
        @body = body
      end

      # text/plain; charset=utf-8.
      def self.text(text, status = 200) = new(status, { "content-type" => "text/plain; charset=utf-8" }, text.to_s)

      # application/json, +value+ serialised.
      def self.json(value, status = 200) = new(status, { "content-type" => "application/json" }, JSON.generate(value))

      # A status with an empty body.
      def self.status(code) = new(code)

      # Set header +name+ (lower-cased); returns self, so calls chain.
      def header(name, value)
        headers[name.to_s.downcase] = value
        self
      end
    end

    class << self
      # The request envelope +data+ as a Request; Malformed when it is not one.
      def decode(data)
        data = data.b
        raise Malformed, "#{data.bytesize} bytes is too short for a request envelope" if data.bytesize < 4

        head_len = data.unpack1("V")
        raise Malformed, "the head is #{head_len} bytes but only #{data.bytesize - 4} follow" if head_len > data.bytesize - 4

        head = begin
          JSON.parse(data.byteslice(4, head_len).force_encoding(Encoding::UTF_8))
        rescue JSON::ParserError, EncodingError => e
          raise Malformed, "the head is not JSON (#{e.message.lines.first&.strip})"
        end
        raise Malformed, "the head is not a JSON object" unless head.is_a?(Hash)
        unless head["method"].is_a?(String) && head["path"].is_a?(String)
          raise Malformed, 'the head has no "method" and "path" strings'
        end

        query = string(head["query"])
        Request.new(
          method: head["method"], path: head["path"], query: query,
          query_params: lists(head["query_params"]) || parse_query(query),
          params: strings(head["params"]), headers: strings(head["headers"]).transform_keys(&:downcase),
          body: data.byteslice((4 + head_len)..), route: string(head["route"]), url: string(head["url"]),
          remote: string(head["remote"]), auth: head["auth"].is_a?(Hash) ? head["auth"] : { "mode" => "public" }
        )
      end

      # +response+ as the response block: head length (u32 LE), head JSON, body.
      def encode(response)
        head = JSON.generate({ status: response.status, headers: response.headers }).b
        [head.bytesize].pack("V") + head + response.body.to_s.b
      end

      # The block a route handler is declared with, as the bytes-in, bytes-out block the
      # dispatcher calls.
      def wrap(block)
        lambda do |input|
          request = begin
            decode(input)
          rescue Malformed => e
            next encode(Response.text("malformed request envelope: #{e.message}", 400))
          end
          answer(block, request)
        end
      end

      private

      def answer(block, request)
        response = block.call(request)
        raise TypeError, "a route handler returns an Omnicore::Route::Response, got #{response.class}" unless response.is_a?(Response)

        encode(response)
      rescue StandardError => e
        Log.error("route handler failed: #{e.class}: #{e.message}")
        encode(Response.text("internal error", 500))
      end

      def string(value) = value.is_a?(String) ? value : ""

      def strings(value)
        value.is_a?(Hash) && value.values.all?(String) ? value : {}
      end

      def lists(value)
        return nil unless value.is_a?(Hash) && value.values.all? { |v| v.is_a?(Array) && v.all?(String) }

        value
      end

      # application/x-www-form-urlencoded, blank values kept, as the host parses the query
      # (for a hand-made envelope without query_params).
      def parse_query(query)
        query.split("&").reject(&:empty?).each_with_object({}) do |part, out|
          name, value = part.split("=", 2)
          (out[unescape(name)] ||= []) << unescape(value || "")
        end
      end

      def unescape(text)
        text.b.tr("+", " ").gsub(/%[0-9A-Fa-f]{2}/n) { |m| m[1, 2].hex.chr }.force_encoding(Encoding::UTF_8).scrub
      end
    end
  end
end
