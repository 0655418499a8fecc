// omnicore SDK for Kotlin/Wasm: handlers (specs/abi.md §1.3, §2): `(ptr, len) -> i64`.
package omnicore

/** What a handler returns to fail the call: the host raises GuestError with `message`. */
class Failure(val message: String)

/** A failed call (return it from a handler). */
fun fail(message: String): Failure = Failure(message)

/** A failed call whose message is `error`'s (a [HostError]'s: "DENIED: ..."). */
fun fail(error: Throwable): Failure = Failure(error.message ?: error.toString())

/** A JSON object from pairs: `json("message" to "Hello")`. */
fun json(vararg pairs: Pair<String, Any?>): Map<String, Any?> = linkedMapOf(*pairs)

private const val ERROR_BIT = 1L shl 31

/** The previous call's output block: the host never frees it (§2.3); the next call does. */
private var lastOutput = 0

private fun freeLastOutput() {
    if (lastOutput != 0) {
        GuestMemory.free(lastOutput)
        lastOutput = 0
    }
}

/** The packed result of an output block (§2.2). */
private fun reply(bytes: ByteArray, error: Boolean): Long {
    val p = GuestMemory.put(bytes)
    lastOutput = p
    if (p == 0 && bytes.isNotEmpty()) return ERROR_BIT  // out of memory: an empty error
    return (p.toLong() shl 32) or bytes.size.toLong() or (if (error) ERROR_BIT else 0L)
}

/**
 * A JSON handler: the input parsed into a Map (anything but a JSON object fails the call with
 * "invalid JSON input: ..."), `body`'s result written as JSON; a [Failure] fails the call. Export it with `@WasmExport`:
 *
 *     @WasmExport
 *     fun greet(ptr: Int, len: Int): Long = handle(ptr, len) { input -> json("message" to "Hi") }
 */
fun handle(ptr: Int, len: Int, body: (Map<String, Any?>) -> Any?): Long {
    freeLastOutput()
    val parsed = Json.parse(GuestMemory.read(ptr, len).decodeToString())
    if (parsed is JsonError) return reply("invalid JSON input: ${parsed.message}".encodeToByteArray(), true)
    @Suppress("UNCHECKED_CAST")
    val input = parsed as? Map<String, Any?>
        ?: return reply("invalid JSON input: expected an object".encodeToByteArray(), true)
    return when (val out = body(input)) {
        is Failure -> reply(out.message.encodeToByteArray(), true)
        else -> reply(Json.stringify(out).encodeToByteArray(), false)
    }
}

/** A bytes handler: the input as bytes, `body`'s bytes as the output. */
fun handleBytes(ptr: Int, len: Int, body: (ByteArray) -> Any): Long {
    freeLastOutput()
    return when (val out = body(GuestMemory.read(ptr, len))) {
        is Failure -> reply(out.message.encodeToByteArray(), true)
        is ByteArray -> reply(out, false)
        else -> reply(out.toString().encodeToByteArray(), false)
    }
}
