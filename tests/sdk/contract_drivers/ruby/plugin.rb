# The contract's driver (tests/sdk/test_contract_fakes.py): its test calls the TestHost's
# host functions directly; the handler only makes this a plugin project.
require "omnicore"

Omnicore.handler(:noop) { |input| input }
