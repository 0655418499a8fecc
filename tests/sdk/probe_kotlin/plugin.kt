// The Kotlin SDK's probe (tests/sdk/test_kotlin.py): what the examples do not reach.
@file:OptIn(kotlin.wasm.ExperimentalWasmInterop::class)

import kotlin.wasm.WasmExport
import omnicore.Http
import omnicore.HttpError
import omnicore.Kv
import omnicore.Response
import omnicore.fail
import omnicore.handle
import omnicore.handleBytes
import omnicore.json
import omnicore.omniAlloc
import omnicore.omniFree

/** kv: set, get, incr, list, delete. */
@WasmExport
fun kv(ptr: Int, len: Int): Long = handle(ptr, len) { input ->
    val key = input["key"] as? String ?: return@handle fail("key must be a string")
    val refused = Kv.set(key, input["value"] as? String ?: "")
    if (refused != null) return@handle fail(refused.message)
    json("get" to Kv.getString(key), "missing" to Kv.getString("$key-absent"),
         "incr" to Kv.incr("$key-n", 5), "list" to Kv.list(key), "delete" to Kv.delete(key),
         "after" to Kv.getString(key))
}

/** http: a GET and a POST to the URL given; the host answers through omni_alloc. */
@WasmExport
fun fetch(ptr: Int, len: Int): Long = handle(ptr, len) { input ->
    val url = input["url"] as? String ?: return@handle fail("url must be a string")
    val got = Http.get(url)
    val posted = Http.post(url, "payload".encodeToByteArray())
    if (got is HttpError) return@handle fail(got.message)
    if (posted is HttpError) return@handle fail(posted.message)
    got as Response
    posted as Response
    json("get" to "${got.status} ${got.text()}", "post" to "${posted.status} ${posted.text()}",
         "method" to posted.headers["x-method"])
}

/** println (a scope of Kotlin's allocator above the arena), then the input back. */
@WasmExport
fun shout(ptr: Int, len: Int): Long = handleBytes(ptr, len) { bytes ->
    println("shouting ${bytes.size} bytes")
    bytes
}

/** The arena's answers: blocks are 8-aligned, never 0, and freed ones are handed out again. */
@WasmExport
fun arena(ptr: Int, len: Int): Long = handle(ptr, len) { _ ->
    val a = omniAlloc(10)
    val b = omniAlloc(100000)
    omniFree(b, 100000)
    omniFree(a, 10)
    val c = omniAlloc(10)
    omniFree(c, 10)
    json("a" to a, "b" to b, "c" to c, "zero" to omniAlloc(0).let { omniFree(it, 0); it })
}
