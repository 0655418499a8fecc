// omnicore SDK for Kotlin/Wasm: the host functions (specs/abi.md §4) with Kotlin types, and
// what they share: HostError, the §3.2 read into a buffer, the §3.3 block the host allocates.
// Unused imports are removed by the build's wasm-opt, so a plugin imports (and is granted)
// only the capabilities it calls.
//
// A call that can fail returns a kotlin.Result whose failure is a HostError: plugins build
// with traps instead of exceptions, so nothing here throws; `getOrThrow()` would trap.
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

/**
 * A host function's refusal (specs/abi.md §3.1): [status] is the ABI's code (-1 ... -6),
 * [code] its name, and [message] starts with that name, as the host's own messages do
 * ("DENIED: host example.com is not in the grant").
 */
class HostError(val status: Int, override val message: String) : Exception(message) {
    /** The status's name: NOT_FOUND, DENIED, INVALID, QUOTA, UNAVAILABLE, TOO_LARGE. */
    val code: String get() = name(status)

    override fun toString(): String = message

    companion object {
        const val NOT_FOUND = -1
        const val DENIED = -2
        const val INVALID = -3
        const val QUOTA = -4
        const val UNAVAILABLE = -5
        const val TOO_LARGE = -6

        private val NAMES = listOf("NOT_FOUND", "DENIED", "INVALID", "QUOTA", "UNAVAILABLE",
                                   "TOO_LARGE")

        /** The name of status code [status] ("ERROR" for a code the ABI does not have). */
        fun name(status: Int): String = NAMES.getOrNull(-status - 1) ?: "ERROR"

        /** A refusal with status [status]: "NAME: what". */
        fun of(status: Int, what: String): HostError = HostError(status, "${name(status)}: $what")

        /** A §3.3 error block's text: its status from the name it starts with. */
        fun parse(text: String): HostError {
            val i = NAMES.indexOfFirst { text.startsWith("$it:") }
            return HostError(if (i < 0) UNAVAILABLE else -i - 1, text)
        }
    }
}

/** A failed [Result] carrying a [HostError]. */
internal fun <T> refused(status: Int, what: String): Result<T> =
    Result.failure(HostError.of(status, what))

/** `bytes` in guest memory for the length of `body` (ptr 0 for no bytes). */
internal inline fun <T> withBytes(bytes: ByteArray, body: (Int, Int) -> T): T {
    val p = GuestMemory.put(bytes)
    try {
        return body(p, bytes.size)
    } finally {
        GuestMemory.free(p)
    }
}

internal inline fun <T> withText(text: String, body: (Int, Int) -> T): T =
    withBytes(text.encodeToByteArray(), body)

/** An arena block of `size` bytes for the length of `body` (0 when out of memory). */
internal inline fun <T> withBlock(size: Int, body: (Int) -> T): T {
    val p = Arena.alloc(size)
    try {
        return body(p)
    } finally {
        GuestMemory.free(p)
    }
}

/** A §3.2 read: the host writes into our buffer, or says how big one must be. */
internal inline fun readInto(call: (Int, Int) -> Int): Pair<Int, ByteArray?> {
    var cap = 256
    while (true) {
        val out = Arena.alloc(cap)
        if (out == 0) return Pair(HostError.UNAVAILABLE, null)
        val n = call(out, cap)
        if (n < 0 || n <= cap) {
            val bytes = if (n < 0) null else GuestMemory.read(out, n)
            GuestMemory.free(out)
            return Pair(n, bytes)
        }
        GuestMemory.free(out)
        cap = n
    }
}

/** A §3.3 result: the block the host allocated through `omni_alloc`, read and freed. */
internal fun takeBlock(packed: Long): Result<ByteArray> {
    val ptr = (packed ushr 32).toInt()
    val len = (packed and 0x7FFF_FFFFL).toInt()
    val bytes = if (ptr == 0) ByteArray(0) else GuestMemory.read(ptr, len)
    GuestMemory.free(ptr)
    if (packed and (1L shl 31) != 0L) return Result.failure(HostError.parse(bytes.decodeToString()))
    return Result.success(bytes)
}

/** A §3.3 result holding JSON, parsed. */
internal fun takeJson(packed: Long, what: String): Result<Any?> = takeBlock(packed).fold(
    onSuccess = { parsedOrRefused(it.decodeToString(), what) },
    onFailure = { Result.failure(it) })

internal fun parsedOrRefused(text: String, what: String): Result<Any?> {
    val value = Json.parse(text)
    if (value is JsonError) return refused(HostError.INVALID, "$what: the host's answer is not JSON")
    return Result.success(value)
}

@Suppress("UNCHECKED_CAST")
internal fun objectOf(value: Any?): Map<String, Any?> = value as? Map<String, Any?> ?: emptyMap()

internal fun longOf(value: Any?): Long? = when (value) {
    is Long -> value
    is Double -> value.toLong()
    else -> null
}

internal fun doubleOf(value: Any?): Double = when (value) {
    is Long -> value.toDouble()
    is Double -> value
    else -> 0.0
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
        withText(message) { p, n -> logWrite(level, p, n) }
    }

    fun debug(message: String) = write(DEBUG, message)
    fun info(message: String) = write(INFO, message)
    fun warn(message: String) = write(WARN, message)
    fun error(message: String) = write(ERROR, message)
}

/** The plugin's own config section (`omnicore:config`). */
object Config {
    /** The value at `key` (dotted keys walk objects) as text: a string verbatim, any other
     *  value as JSON; null when absent. */
    fun get(key: String): String? {
        val (n, bytes) = withText(key) { k, kl -> readInto { out, cap -> configGet(k, kl, out, cap) } }
        return if (n < 0 || bytes == null) null else bytes.decodeToString()
    }

    /** The whole section, parsed. */
    fun all(): Map<String, Any?> = objectOf(Json.parse(get("") ?: "{}"))
}

/** The plugin's durable key-value store (`omnicore:kv`). */
object Kv {
    fun get(key: String): ByteArray? {
        val (n, bytes) = withText(key) { k, kl -> readInto { out, cap -> kvGet(k, kl, out, cap) } }
        return if (n < 0) null else bytes
    }

    fun getString(key: String): String? = get(key)?.decodeToString()

    /** Stores `value`; a failed [Result] when refused: QUOTA (the plugin's quota), TOO_LARGE
     *  (over `max_value_bytes`), INVALID (a bad key). */
    fun set(key: String, value: ByteArray): Result<Unit> {
        val status = withText(key) { k, kl -> withBytes(value) { v, vl -> kvSet(k, kl, v, vl) } }
        return when (status) {
            0 -> Result.success(Unit)
            HostError.QUOTA -> refused(status, "kv quota exceeded")
            HostError.TOO_LARGE -> refused(status, "kv value too large")
            else -> refused(status, "kv.set of $key")
        }
    }

    fun set(key: String, value: String): Result<Unit> = set(key, value.encodeToByteArray())

    /** Whether `key` existed. */
    fun delete(key: String): Boolean = withText(key) { k, kl -> kvDelete(k, kl) } == 1

    /** Adds `delta` to the integer at `key` (absent: 0), atomically in the host: the new
     *  value, or null when the value is not an integer. */
    fun incr(key: String, delta: Long = 1): Long? = withBlock(8) { out ->
        if (out == 0) return@withBlock null
        val status = withText(key) { k, kl -> kvIncr(k, kl, delta, out) }
        if (status == 0) GuestMemory.readLong(out) else null
    }

    /** The keys starting with `prefix`, sorted (at most 1,000). */
    fun list(prefix: String = ""): List<String> {
        val (n, bytes) = withText(prefix) { k, kl -> readInto { out, cap -> kvList(k, kl, out, cap) } }
        if (n < 0 || bytes == null) return emptyList()
        val parsed = Json.parse(bytes.decodeToString()) as? List<*> ?: return emptyList()
        return parsed.filterIsInstance<String>()
    }
}

/** What `omnicore test` hands the test host just before a request only the test can answer
 *  (omnicore.testing sets them; a plugin's build never does). */
internal object TestHooks {
    var http: ((String) -> Unit)? = null
    var sql: ((String, String, Boolean) -> Unit)? = null
}
