// Compiled as a second entry file by `omnicore build`: the allocator pair every plugin
// exports (ABI §1.1), so a plugin's own file exports only its handlers.
export { omni_alloc, omni_free } from "omnicore";
