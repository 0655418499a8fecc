// omnicore SDK for Kotlin/Wasm: outbound HTTP (`omnicore:http`, specs/abi.md §4.7). The host
// answers into a block it gets from `omni_alloc` during the call (re-entrant allocation,
// §3.3): the arena stays whole, and the SDK frees the block once it has read it.
@file:OptIn(kotlin.wasm.ExperimentalWasmInterop::class)

package omnicore

import kotlin.wasm.WasmImport

@WasmImport("omnicore:http", "request")
private external fun httpRequest(req: Int, reqLen: Int, body: Int, bodyLen: Int): Long

/** An HTTP response: status, headers (lower-case names) and body bytes. */
class Response(val status: Int, val headers: Map<String, String>, val body: ByteArray) {
    fun text(): String = body.decodeToString()

    /** The body parsed as JSON (a [JsonError] when it is not). */
    fun json(): Any? = Json.parse(text())
}

/** A refused or failed request: the host's message ("DENIED: ...", "INVALID: ...", ...). */
class HttpError(val message: String)

object Http {
    /**
     * Sends a request: `request` holds "method", "url" (or "connector" and "path"), optional
     * "headers" and "timeout_ms" (specs/abi.md §4.7). A [Response], or an [HttpError].
     */
    fun send(request: Map<String, Any?>, body: ByteArray = ByteArray(0)): Any {
        val req = Json.stringify(request).encodeToByteArray()
        val reqPtr = Memory.put(req)
        val bodyPtr = Memory.put(body)
        val packed = httpRequest(reqPtr, req.size, bodyPtr, body.size)
        Memory.free(bodyPtr)
        Memory.free(reqPtr)
        val ptr = (packed ushr 32).toInt()
        val len = (packed and 0x7FFF_FFFFL).toInt()
        val bytes = Memory.read(ptr, len)
        Memory.free(ptr)
        if (packed and (1L shl 31) != 0L) return HttpError(bytes.decodeToString())
        if (bytes.size < 4) return HttpError("INVALID: short response block")
        val headLen = (bytes[0].toInt() and 0xFF) or ((bytes[1].toInt() and 0xFF) shl 8) or
            ((bytes[2].toInt() and 0xFF) shl 16) or ((bytes[3].toInt() and 0xFF) shl 24)
        if (headLen < 0 || 4 + headLen > bytes.size) return HttpError("INVALID: bad response head")
        val head = Json.parse(bytes.copyOfRange(4, 4 + headLen).decodeToString()) as? Map<*, *>
            ?: return HttpError("INVALID: bad response head")
        val status = (head["status"] as? Long)?.toInt() ?: 0
        val headers = LinkedHashMap<String, String>()
        (head["headers"] as? Map<*, *>)?.forEach { (k, v) -> headers[k.toString()] = v.toString() }
        return Response(status, headers, bytes.copyOfRange(4 + headLen, bytes.size))
    }

    fun get(url: String, headers: Map<String, String> = emptyMap()): Any =
        send(mapOf("method" to "GET", "url" to url, "headers" to headers))

    fun post(url: String, body: ByteArray, headers: Map<String, String> = emptyMap()): Any =
        send(mapOf("method" to "POST", "url" to url, "headers" to headers), body)
}
