# The greeter, as every SDK writes it: {"name": "Ada"} -> {"message": "Hello, Ada!"}.
require "omnicore"

Omnicore.handler :greet, title: "Greet" do |input|
  request = JSON.parse(input.force_encoding(Encoding::UTF_8))
  raise ArgumentError, 'invalid JSON input: expected an object like {"name": "Ada"}' unless request.is_a?(Hash)

  name = request.fetch("name", "world")
  raise ArgumentError, "name must be a string" unless name.is_a?(String)
  raise ArgumentError, "name must not be empty" if name.empty?

  greeting = Omnicore::Config.get("greeting", "Hello")
  Omnicore::Log.info("greeting #{name}")
  JSON.generate({ message: "#{greeting}, #{name}!" })
end
