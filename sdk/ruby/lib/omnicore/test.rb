# frozen_string_literal: true

module Omnicore
  # The test runner of `omnicore test`, in the plugin's own interpreter: subclasses of
  # Omnicore::Test with test_* methods, and minitest's common assertions.
  #
  #   class GreeterTest < Omnicore::Test
  #     def test_greets
  #       assert_equal({ "message" => "Hello, Ada!" }, TestHost.new.call_json(:greet, name: "Ada"))
  #     end
  #   end
  class Test
    # A failed assertion.
    class Failure < StandardError; end

    @cases = []

    class << self
      attr_reader :cases

      def inherited(subclass)
        super
        Test.cases << subclass
      end

      # Run every test; print each failure and the closing "N passed, N failed" line.
      def run_all(out = $stdout)
        passed = failed = 0
        cases.each do |klass|
          klass.public_instance_methods(true).grep(/\Atest_/).sort.each do |name|
            klass.new.public_send(name)
            passed += 1
          rescue Exception => e # rubocop:disable Lint/RescueException -- a test's failure, reported
            failed += 1
            where = Array(e.backtrace).find { |l| l.start_with?("/omnicore/plugin/") } || Array(e.backtrace).first
            out.puts "FAIL #{klass}##{name}: #{e.class == Failure ? "" : "#{e.class}: "}#{e.message}\n  #{where&.sub("/omnicore/plugin/", "")}"
          end
        end
        out.puts "#{passed} passed, #{failed} failed"
        failed
      end
    end

    def assert(test, message = "expected a truthy value")
      raise Failure, message unless test

      true
    end

    def refute(test, message = "expected a falsy value") = assert(!test, message)
    def assert_equal(expected, actual, message = nil) = assert(expected == actual, message || "expected #{expected.inspect}, got #{actual.inspect}")
    def refute_equal(expected, actual, message = nil) = assert(expected != actual, message || "expected something other than #{expected.inspect}")
    def assert_nil(value, message = nil) = assert(value.nil?, message || "expected nil, got #{value.inspect}")
    def assert_includes(collection, item, message = nil) = assert(collection.include?(item), message || "expected #{collection.inspect} to include #{item.inspect}")
    def assert_match(pattern, text, message = nil) = assert(pattern.match?(text), message || "expected #{text.inspect} to match #{pattern.inspect}")

    def assert_raises(*classes, message: nil)
      classes = [StandardError] if classes.empty?
      yield
    rescue *classes => e
      e
    else
      raise Failure, message || "expected #{classes.join(" or ")} to be raised"
    end
  end
end
