// Compiled as an extra entry by `omnicore test`: what testing/run.mjs calls.
export { omni_alloc, omni_free } from "omnicore";
export { __test_count, __test_name, __test_run } from "omnicore/testing";
