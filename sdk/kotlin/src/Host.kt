// omnicore SDK for Kotlin/Wasm: the host functions (specs/abi.md §4) with Kotlin types.
// Unused imports are removed by the build's wasm-opt, so a plugin imports (and is granted)
// only the capabilities it calls.
@file:OptIn(kotlin.wasm.ExperimentalWasmInterop::class)

package omnicore

import kotlin.wasm.WasmImport

@WasmImport("omnicore:log", "write")
private external fun logWrite(level: Int, ptr: Int, len: Int)

@WasmImport("omnicore:log", "enabled")
private external fun logEnabled(level: Int): Int

@WasmImport("omnicore:config", "get")
private external fun configGet(key: Int, keyLen: Int, out: Int, outCap: Int): Int

@WasmImport("omnicore:kv", "get")
private external fun kvGet(key: Int, keyLen: Int, out: Int, outCap: Int): Int

@WasmImport("omnicore:kv", "set")
private external fun kvSet(key: Int, keyLen: Int, value: Int, valueLen: Int): Int

@WasmImport("omnicore:kv", "delete")
private external fun kvDelete(key: Int, keyLen: Int): Int

@WasmImport("omnicore:kv", "incr")
private external fun kvIncr(key: Int, keyLen: Int, delta: Long, out: Int): Int

@WasmImport("omnicore:kv", "list")
private external fun kvList(prefix: Int, prefixLen: Int, out: Int, outCap: Int): Int

/** A host function's failure status (specs/abi.md §3.1), as a message. */
class HostError(val status: Int, val message: String)

/** `bytes` in guest memory for the length of `body` (ptr 0 for no bytes). */
private inline fun <T> withBytes(bytes: ByteArray, body: (Int, Int) -> T): T {
    val p = Memory.put(bytes)
    try {
        return body(p, bytes.size)
    } finally {
        Memory.free(p)
    }
}

/** A §3.2 read: the host writes into our buffer, or says how big one must be. */
private inline fun readInto(call: (Int, Int) -> Int): Pair<Int, ByteArray?> {
    var cap = 256
    while (true) {
        val out = Arena.alloc(cap)
        if (out == 0) return Pair(-5, null)
        val n = call(out, cap)
        if (n < 0 || n <= cap) {
            val bytes = if (n < 0) null else Memory.read(out, n)
            Memory.free(out)
            return Pair(n, bytes)
        }
        Memory.free(out)
        cap = n
    }
}

/** The plugin's log (`omnicore:log`): lands in the host's log and the plugin's ring. */
object Log {
    const val TRACE = 0
    const val DEBUG = 1
    const val INFO = 2
    const val WARN = 3
    const val ERROR = 4

    fun enabled(level: Int): Boolean = logEnabled(level) != 0

    fun write(level: Int, message: String) {
        withBytes(message.encodeToByteArray()) { p, n -> logWrite(level, p, n) }
    }

    fun debug(message: String) = write(DEBUG, message)
    fun info(message: String) = write(INFO, message)
    fun warn(message: String) = write(WARN, message)
    fun error(message: String) = write(ERROR, message)
}

/** The plugin's own config section (`omnicore:config`). */
object Config {
    /** The value at `key` as text (a string verbatim, any other value as JSON), or null. */
    fun get(key: String): String? {
        val (n, bytes) = withBytes(key.encodeToByteArray()) { k, kl ->
            readInto { out, cap -> configGet(k, kl, out, cap) }
        }
        return if (n < 0 || bytes == null) null else bytes.decodeToString()
    }

    /** The whole section, parsed. */
    fun all(): Map<String, Any?> = (Json.parse(get("") ?: "{}") as? Map<String, Any?>) ?: emptyMap()
}

/** The plugin's durable key-value store (`omnicore:kv`). */
object Kv {
    fun get(key: String): ByteArray? {
        val (n, bytes) = withBytes(key.encodeToByteArray()) { k, kl ->
            readInto { out, cap -> kvGet(k, kl, out, cap) }
        }
        return if (n < 0) null else bytes
    }

    fun getString(key: String): String? = get(key)?.decodeToString()

    /** Stores `value`; a [HostError] when refused (quota, value size), else null. */
    fun set(key: String, value: ByteArray): HostError? {
        val status = withBytes(key.encodeToByteArray()) { k, kl ->
            withBytes(value) { v, vl -> kvSet(k, kl, v, vl) }
        }
        return when (status) {
            0 -> null
            -4 -> HostError(status, "kv quota exceeded")
            -6 -> HostError(status, "kv value too large")
            else -> HostError(status, "kv.set failed ($status)")
        }
    }

    fun set(key: String, value: String): HostError? = set(key, value.encodeToByteArray())

    /** Whether `key` existed. */
    fun delete(key: String): Boolean =
        withBytes(key.encodeToByteArray()) { k, kl -> kvDelete(k, kl) } == 1

    /** Adds `delta` to the integer at `key` (absent: 0): the new value, or null if not an integer. */
    fun incr(key: String, delta: Long = 1): Long? {
        val out = Arena.alloc(8)
        if (out == 0) return null
        val status = withBytes(key.encodeToByteArray()) { k, kl -> kvIncr(k, kl, delta, out) }
        val value = if (status == 0) Memory.readLong(out) else null
        Memory.free(out)
        return value
    }

    /** The keys starting with `prefix`, sorted (at most 1,000). */
    fun list(prefix: String = ""): List<String> {
        val (n, bytes) = withBytes(prefix.encodeToByteArray()) { k, kl ->
            readInto { out, cap -> kvList(k, kl, out, cap) }
        }
        if (n < 0 || bytes == null) return emptyList()
        val parsed = Json.parse(bytes.decodeToString()) as? List<*> ?: return emptyList()
        return parsed.filterIsInstance<String>()
    }
}
