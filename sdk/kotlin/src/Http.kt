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

object Http {
    /**
     * Sends a request: `request` holds "method", "url" (or "connector" and "path"), optional
     * "headers" and "timeout_ms" (specs/abi.md §4.7). A [Response], or a failed [Result]
     * whose [HostError] is the host's message ("DENIED: host example.com is not in the
     * grant", "UNAVAILABLE: ...").
     */
    fun send(request: Map<String, Any?>, body: ByteArray = ByteArray(0)): Result<Response> {
        val req = Json.stringify(request)
        TestHooks.http?.invoke(req)
        val packed = withText(req) { rp, rl -> withBytes(body) { bp, bl -> httpRequest(rp, rl, bp, bl) } }
        val bytes = takeBlock(packed).getOrElse { return Result.failure(it) }
        if (bytes.size < 4) return refused(HostError.INVALID, "short response block")
        val headLen = (bytes[0].toInt() and 0xFF) or ((bytes[1].toInt() and 0xFF) shl 8) or
            ((bytes[2].toInt() and 0xFF) shl 16) or ((bytes[3].toInt() and 0xFF) shl 24)
        if (headLen < 0 || 4 + headLen > bytes.size) return refused(HostError.INVALID, "bad response head")
        val head = Json.parse(bytes.copyOfRange(4, 4 + headLen).decodeToString()) as? Map<*, *>
            ?: return refused(HostError.INVALID, "bad response head")
        val headers = LinkedHashMap<String, String>()
        (head["headers"] as? Map<*, *>)?.forEach { (k, v) -> headers[k.toString()] = v.toString() }
        return Result.success(Response(longOf(head["status"])?.toInt() ?: 0, headers,
                                       bytes.copyOfRange(4 + headLen, bytes.size)))
    }

    fun get(url: String, headers: Map<String, String> = emptyMap()): Result<Response> =
        send(mapOf("method" to "GET", "url" to url, "headers" to headers))

    fun post(url: String, body: ByteArray, headers: Map<String, String> = emptyMap()): Result<Response> =
        send(mapOf("method" to "POST", "url" to url, "headers" to headers), body)

    fun post(url: String, body: String, headers: Map<String, String> = emptyMap()): Result<Response> =
        post(url, body.encodeToByteArray(), headers)

    /** A request through connector `connector` (its base URL and credentials are the
     *  host's): `path` joined to its base URL. */
    fun connector(connector: String, method: String, path: String, body: ByteArray = ByteArray(0),
                  headers: Map<String, String> = emptyMap()): Result<Response> =
        send(mapOf("method" to method, "connector" to connector, "path" to path,
                   "headers" to headers), body)
}
