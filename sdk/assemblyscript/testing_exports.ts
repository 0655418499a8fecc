// Compiled as an extra entry by `omnicore test`: the program's entry point, which lists the
// tests or runs one (omnicore.toolchains.testhost.astest), and the allocator host calls use.
export { omni_alloc, omni_free } from "omnicore";
export { _start } from "omnicore/testing";
