// The counter example: `count` adds `by` (default 1) to a counter that starts at config
// `start`; `reset` puts it back. The count lives in omnicore:kv (key "count", the distance
// from `start`), so it survives a restart and every instance in the pool shares it:
// `Kv.incr` is atomic in the host.
@file:OptIn(kotlin.wasm.ExperimentalWasmInterop::class)

import kotlin.wasm.WasmExport
import omnicore.Config
import omnicore.Json
import omnicore.Kv
import omnicore.Log
import omnicore.fail
import omnicore.handle
import omnicore.handleBytes
import omnicore.json

private const val KEY = "count"
private const val OVERFLOW = "counter overflow: the result does not fit in 64 bits"

/** Config `start` (default 0), or null when it is not an integer. */
private fun start(): Long? = Config.get("start")?.toLongOrNull() ?: if (Config.get("start") == null) 0L else null

@WasmExport
fun count(ptr: Int, len: Int): Long = handle(ptr, len) { input ->
    val given = input["by"]
    if (given != null && given !is Long) return@handle fail("by must be an integer in the 64-bit range")
    val by = given as Long? ?: 1L
    val from = start() ?: return@handle fail("config 'start' must be an integer")
    val moved = Kv.incr(KEY, by) ?: return@handle fail(OVERFLOW)
    val next = from + moved
    if (((from xor next) and (moved xor next)) < 0) {
        // Take the step back so the stored count stays where it was (-MIN_VALUE in two steps).
        if (by == Long.MIN_VALUE) {
            Kv.incr(KEY, Long.MAX_VALUE)
            Kv.incr(KEY, 1)
        } else {
            Kv.incr(KEY, -by)
        }
        return@handle fail(OVERFLOW)
    }
    Log.debug("count += $by -> $next")
    json("count" to next)
}

/** Takes any input (it is ignored), so `reset` can be called with an empty body. */
@WasmExport
fun reset(ptr: Int, len: Int): Long = handleBytes(ptr, len) { _ ->
    val from = start() ?: return@handleBytes fail("config 'start' must be an integer")
    Kv.delete(KEY)
    Log.info("counter reset to $from")
    Json.stringify(json("count" to from)).encodeToByteArray()
}
