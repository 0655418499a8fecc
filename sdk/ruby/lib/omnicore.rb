# frozen_string_literal: true

# The omnicore plugin SDK for Ruby.
#
#   require "omnicore"
#
#   Omnicore.json_handler :greet do |request|
#     { message: "Hello, #{request.fetch("name", "world")}!" }
#   end
#
# A handler gets the input as a binary String (or, as a json_handler, parsed JSON) and
# returns a String (or, as a json_handler, anything JSON can write). An exception it raises
# becomes the call's error message. Capabilities are modules: Omnicore::Log, Config, KV,
# Memory, Vectors, Tasks, HTTP, Events, Secrets, SQL, Redis and MCP; using one in the sources is
# what makes the build import (and so request) it.
require "json"
require "omnicore/errors"
require "omnicore/host"
require "omnicore/handlers"
require "omnicore/log"
require "omnicore/config"
require "omnicore/kv"
require "omnicore/memory"
require "omnicore/vectors"
require "omnicore/tasks"
require "omnicore/http"
require "omnicore/events"
require "omnicore/secrets"
require "omnicore/sql"
require "omnicore/redis"
require "omnicore/mcp"
require "omnicore/route"
# (omnicore/testing and omnicore/test are for a plugin's tests: `omnicore test` loads them.)
