# frozen_string_literal: true

require "json"
require "set"

module Omnicore
  # The TestHost's in-memory Redis: specs/abi.md §4.11's commands on the host's data
  # (+TestHost#redis+, keys under its prefix), refusing what the host refuses.
  class RedisFake
    # A refusal, its message as the host words it ("DENIED: ...").
    class Refused < StandardError; end

    # specs/abi.md §4.11's commands, name => [least args, most args or nil, keys], from the
    # host's answers (sdk/contract/host.json, which `omnicore test` stages beside the SDK).
    COMMANDS = JSON.parse(File.read(File.expand_path("../../../contract/host.json", __dir__)))
                   .dig("redis", "commands").freeze
    WRONGTYPE = "INVALID: WRONGTYPE Operation against a key holding the wrong kind of value"

    def initialize(host)
      @host = host
      @db = host.redis
      @ttl = host.redis_ttl
      @prefix = host.redis_prefix
    end

    # The reply to +cmd+ with +args+ (Strings).
    def run(cmd, args)
      raise Refused, "DENIED: redis command '#{cmd}' is not allowed" unless COMMANDS.key?(cmd)

      least, most = COMMANDS[cmd]
      if args.size < least || (most && args.size > most)
        counts = if most == least then least.to_s elsif most then "#{least} to #{most}" else "#{least} or more" end
        raise Refused, "INVALID: #{cmd} takes #{counts} arguments, got #{args.size}"
      end

      @key = @prefix + args[0]
      case cmd
      when "GET" then typed(String)
      when "GETDEL" then typed(String).tap { store(nil) }
      when "SET", "SETNX" then set(cmd, args)
      when "MGET" then args.map { |a| (v = @db[@prefix + a]).is_a?(String) ? v : nil }
      when "DEL", "EXISTS" then del_or_exists(cmd, args)
      when "INCR", "DECR", "INCRBY", "DECRBY" then incr(cmd, args)
      when "EXPIRE", "PEXPIRE" then expire(cmd, args)
      when "TTL", "PTTL" then ttl(cmd)
      when "PERSIST" then @ttl.delete(@key) ? 1 : 0
      when "PUBLISH"
        @host.events << ["redis:#{@key}", args[1].to_s.b]
        0
      when /\AH/ then hash(cmd, args)
      when /\AS/ then set_command(cmd, args)
      else list(cmd, args)
      end
    end

    private

    def int(text)
      Integer(text, 10)
    rescue ArgumentError, TypeError
      raise Refused, "INVALID: value is not an integer or out of range"
    end

    def typed(kind)
      value = @db[@key]
      raise Refused, WRONGTYPE unless value.nil? || value.is_a?(kind)

      value
    end

    def store(value)
      if value.nil? || value.empty?
        @db.delete(@key)
        @ttl.delete(@key)
      else
        @db[@key] = value
      end
    end

    def set(cmd, args)
      nx = cmd == "SETNX"
      xx = keep = false
      ex = nil
      options = args[2..].map(&:upcase).each
      loop do
        case (option = options.next)
        when "EX", "PX"
          n = int(options.next)
          ex = option == "EX" ? n : -(-n / 1000)
        when "NX" then nx = true
        when "XX" then xx = true
        when "KEEPTTL" then keep = true
        else raise Refused, "INVALID: syntax error"
        end
      end
      return (cmd == "SETNX" ? 0 : nil) if (nx && @db.key?(@key)) || (xx && !@db.key?(@key))

      @db[@key] = args[1].to_s
      if ex then @ttl[@key] = ex
      elsif !keep then @ttl.delete(@key)
      end
      cmd == "SETNX" ? 1 : "OK"
    end

    def del_or_exists(cmd, args)
      keys = args.map { |a| @prefix + a }.select { |k| @db.key?(k) }
      if cmd == "DEL"
        keys.each do |k|
          @db.delete(k)
          @ttl.delete(k)
        end
      end
      keys.size
    end

    def incr(cmd, args)
      by = { "INCR" => 1, "DECR" => -1 }.fetch(cmd) { int(args[1]) * (cmd == "DECRBY" ? -1 : 1) }
      value = int(typed(String) || "0") + by
      @db[@key] = value.to_s
      value
    end

    def expire(cmd, args)
      seconds = cmd == "EXPIRE" ? int(args[1]) : -(-int(args[1]) / 1000)
      return 0 unless @db.key?(@key)

      seconds.positive? ? @ttl[@key] = seconds : store(nil)
      1
    end

    def ttl(cmd)
      return -2 unless @db.key?(@key)
      return -1 unless @ttl.key?(@key)

      @ttl[@key] * (cmd == "TTL" ? 1 : 1000)
    end

    def hash(cmd, args)
      h = typed(Hash) || {}
      case cmd
      when "HGET" then h[args[1]]
      when "HEXISTS" then h.key?(args[1]) ? 1 : 0
      when "HLEN" then h.size
      when "HGETALL" then h.dup
      when "HSET"
        pairs = args[1..].each_slice(2).to_a
        pairs.count { |f, _| !h.key?(f) }.tap { pairs.each { |f, v| h[f] = v.to_s } }
      when "HDEL" then args[1..].count { |f| h.delete(f) }
      else (h[args[1]] = (int(h.fetch(args[1], "0")) + int(args[2])).to_s).to_i # HINCRBY
      end
    ensure
      store(h) if h
    end

    def set_command(cmd, args)
      members = typed(Set) || Set.new
      case cmd
      when "SADD" then (Set.new(args[1..]) - members).size.tap { members.merge(args[1..]) }
      when "SREM" then (Set.new(args[1..]) & members).size.tap { members.subtract(args[1..]) }
      when "SISMEMBER" then members.include?(args[1]) ? 1 : 0
      when "SCARD" then members.size
      else members.to_a.sort # SMEMBERS
      end
    ensure
      store(members) if members
    end

    def list(cmd, args)
      items = typed(Array) || []
      case cmd
      when "LPUSH" then args[1..].each { |v| items.unshift(v) }.then { items.size }
      when "RPUSH" then items.concat(args[1..]).size
      when "LPOP" then items.shift
      when "RPOP" then items.pop
      when "LLEN" then items.size
      else
        n = items.size
        start, stop = [int(args[1]), int(args[2])].map { |i| i.negative? ? i + n : i }
        span = items[[start, 0].max..stop] || []
        return span if cmd == "LRANGE"

        items.replace(span)
        "OK" # LTRIM
      end
    ensure
      store(items) if items
    end
  end
end
