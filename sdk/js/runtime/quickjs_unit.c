/*
 * QuickJS-ng's quickjs.c compiled as part of this unit, so the runtime can reach one private
 * field without patching third-party sources: Math.random's state. A plugin built with a
 * pre-initialised snapshot (see omnicore.toolchains.js) would otherwise give every instance
 * the PRNG state of the build machine's clock at build time.
 */
#include "quickjs.c"

void omni_js_reseed(JSContext *ctx, uint64_t seed) {
    ctx->random_state = seed ? seed : 1;
}
