// omnicore SDK for Kotlin/Wasm: secrets, events, tasks and the MCP client of a tool call
// (specs/abi.md §4.9, §4.8, §4.6, §4.13).
@file:OptIn(kotlin.wasm.ExperimentalWasmInterop::class)

package omnicore

import kotlin.wasm.WasmImport

@WasmImport("omnicore:secrets", "get")
private external fun secretsGet(name: Int, nameLen: Int, out: Int, outCap: Int): Int

@WasmImport("omnicore:events", "publish")
private external fun eventsPublish(topic: Int, topicLen: Int, payload: Int, payloadLen: Int): Int

@WasmImport("omnicore:tasks", "enqueue")
private external fun tasksEnqueue(handler: Int, handlerLen: Int, payload: Int, payloadLen: Int,
                                  delayMs: Long): Long

@WasmImport("omnicore:tasks", "cancel")
private external fun tasksCancel(id: Long): Int

@WasmImport("omnicore:mcp", "progress")
private external fun mcpProgress(progress: Double, total: Double, msg: Int, msgLen: Int): Int

@WasmImport("omnicore:mcp", "ask")
private external fun mcpAsk(req: Int, reqLen: Int): Long

/** Secrets the operator exposed to this plugin (`omnicore:secrets`, grant `expose`). */
object Secrets {
    /** The secret's bytes; null when it is exposed but not set; a failed [Result] DENIED when
     *  it is not exposed to this plugin, INVALID for a bad name. */
    fun get(name: String): Result<ByteArray?> {
        val (n, bytes) = withText(name) { p, l -> readInto { out, cap -> secretsGet(p, l, out, cap) } }
        return when {
            n >= 0 -> Result.success(bytes)
            n == HostError.NOT_FOUND -> Result.success(null)
            n == HostError.DENIED -> refused(n, "secret $name is not exposed to this plugin")
            else -> refused(n, "secret $name")
        }
    }

    /** [get] as UTF-8 text. */
    fun getString(name: String): Result<String?> = get(name).map { it?.decodeToString() }
}

/** Events (`omnicore:events`): the host puts `plugin.<name>.` before the topic. */
object Events {
    /** Publishes `payload` on `topic`; DENIED when the grant's `publish` patterns do not
     *  allow the topic. */
    fun publish(topic: String, payload: ByteArray): Result<Unit> {
        val status = withText(topic) { t, tl -> withBytes(payload) { p, pl -> eventsPublish(t, tl, p, pl) } }
        return if (status == 0) Result.success(Unit) else refused(status, "publish to $topic")
    }

    fun publish(topic: String, payload: String): Result<Unit> = publish(topic, payload.encodeToByteArray())

    /** Publishes `value` as JSON. */
    fun publishJson(topic: String, value: Any?): Result<Unit> = publish(topic, Json.stringify(value))
}

/** Durable background work (`omnicore:tasks`): the host later calls one of this plugin's
 *  handlers with the payload, at least once. */
object Tasks {
    /** Schedules `handler(payload)` after `delayMs`: the task's id; NOT_FOUND when this
     *  plugin has no such handler, QUOTA when its queue is full. */
    fun enqueue(handler: String, payload: ByteArray = ByteArray(0), delayMs: Long = 0): Result<Long> {
        val id = withText(handler) { h, hl -> withBytes(payload) { p, pl -> tasksEnqueue(h, hl, p, pl, delayMs) } }
        if (id >= 1) return Result.success(id)
        return refused(id.toInt(), if (id == HostError.NOT_FOUND.toLong()) "no handler $handler in this plugin"
                                   else "enqueue $handler")
    }

    fun enqueue(handler: String, payload: String, delayMs: Long = 0): Result<Long> =
        enqueue(handler, payload.encodeToByteArray(), delayMs)

    /** Cancels task `id`: true when cancelled, false when it is already running or done;
     *  NOT_FOUND for an unknown id. */
    fun cancel(id: Long): Result<Boolean> = when (val status = tasksCancel(id)) {
        1 -> Result.success(true)
        0 -> Result.success(false)
        else -> refused(status, "task $id")
    }
}

/** The MCP client that called this handler as a tool (`omnicore:mcp`); outside MCP nobody
 *  listens: progress reaches nobody and a question is UNAVAILABLE. */
object Mcp {
    /** Reports progress (`total <= 0`: unknown): true when it was sent. */
    fun progress(progress: Double, total: Double = 0.0, message: String = ""): Boolean =
        withText(message) { p, l -> mcpProgress(progress, total, p, l) } == 0

    /** Asks the client: `request` is `{"method": "elicitation/create", "params": {...}}`
     *  (or sampling/createMessage, roots/list); the client's answer, parsed. */
    fun ask(request: Map<String, Any?>): Result<Any?> =
        takeJson(withText(Json.stringify(request)) { p, l -> mcpAsk(p, l) }, "mcp.ask")

    /** An elicitation: `message` and the JSON schema of what to ask. */
    fun elicit(message: String, requestedSchema: Map<String, Any?>): Result<Map<String, Any?>> =
        ask(mapOf("method" to "elicitation/create",
                  "params" to mapOf("message" to message, "requestedSchema" to requestedSchema)))
            .map { objectOf(it) }
}
