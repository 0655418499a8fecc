// The contract's driver (tests/sdk/test_contract_fakes.py): its test calls the test host's
// functions directly; this handler only makes the folder a plugin project.
export function noop(input) { return input; }
