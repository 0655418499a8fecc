// omnicore SDK for Kotlin/Wasm: unit tests for handlers, run by `omnicore test`.
//
// `omnicore test` compiles the plugin's .kt files, the tests in its tests/ folder and this
// package into one WASI program (the build's own compiler and flags) and runs it on omnicore's
// test host (omnicore.toolchains.testhost): every capability call goes to the host's own code,
// every capability granted, over in-memory stores, as a plugin's call does live. Each test runs
// alone, in a fresh instance on a fresh host. [Host] sets that host up, calls handlers and reads
// back what they did through the `omnicore:testing` imports.
//
//     @Test
//     fun `greet uses the configured greeting`() {
//         val host = Host()
//         host.setConfig("greeting", "Hi")
//         assertEquals(mapOf("message" to "Hi, Ada!"), host.callJson(::greet, json("name" to "Ada")))
//     }
//
// Plugins build with traps instead of exceptions, so a failed assertion cannot throw: it logs
// the test's failure and ends the test's run (the runner prints the message); a trap in the
// code under test ends it too, and the runner says where.
@file:OptIn(kotlin.wasm.ExperimentalWasmInterop::class, kotlin.io.encoding.ExperimentalEncodingApi::class)

package omnicore.testing

import kotlin.io.encoding.Base64
import kotlin.wasm.WasmImport
import omnicore.GuestMemory
import omnicore.Json
import omnicore.Log
import omnicore.TestHooks
import omnicore.readInto
import omnicore.withBlock
import omnicore.withBytes
import omnicore.withText

/** Marks a test: a top-level `fun NAME()` with no parameters, in a .kt file of tests/. */
@Target(AnnotationTarget.FUNCTION)
annotation class Test

@WasmImport("omnicore:testing", "reset")
private external fun ctlReset()

@WasmImport("omnicore:testing", "config_set")
private external fun ctlConfigSet(k: Int, kl: Int, v: Int, vl: Int)

@WasmImport("omnicore:testing", "set_config")
private external fun ctlSetConfig(p: Int, l: Int): Int

@WasmImport("omnicore:testing", "set_log_level")
private external fun ctlSetLogLevel(level: Int)

@WasmImport("omnicore:testing", "set_secret")
private external fun ctlSetSecret(n: Int, nl: Int, v: Int, vl: Int, present: Int)

@WasmImport("omnicore:testing", "http_answer")
private external fun ctlHttpAnswer(h: Int, hl: Int, b: Int, bl: Int, failed: Int)

@WasmImport("omnicore:testing", "sql_answer")
private external fun ctlSqlAnswer(p: Int, l: Int, failed: Int)

@WasmImport("omnicore:testing", "sql_kind")
private external fun ctlSqlKind(n: Int, nl: Int, k: Int, kl: Int): Int

@WasmImport("omnicore:testing", "logs")
private external fun ctlLogs(out: Int, cap: Int): Int

@WasmImport("omnicore:testing", "events")
private external fun ctlEvents(out: Int, cap: Int): Int

@WasmImport("omnicore:testing", "tasks")
private external fun ctlTasks(out: Int, cap: Int): Int

@WasmImport("omnicore:testing", "sql_statements")
private external fun ctlSqlStatements(out: Int, cap: Int): Int

@WasmImport("omnicore:testing", "kv_set")
private external fun ctlKvSet(k: Int, kl: Int, v: Int, vl: Int)

@WasmImport("omnicore:testing", "kv_get")
private external fun ctlKvGet(k: Int, kl: Int, out: Int, cap: Int): Int

@WasmImport("omnicore:testing", "redis_get")
private external fun ctlRedisGet(k: Int, kl: Int, out: Int, cap: Int): Int

@WasmImport("omnicore:testing", "redis_set")
private external fun ctlRedisSet(k: Int, kl: Int, v: Int, vl: Int)

@WasmImport("omnicore:testing", "redis_ttl")
private external fun ctlRedisTtl(k: Int, kl: Int): Long

@WasmImport("wasi_snapshot_preview1", "args_sizes_get")
private external fun argsSizesGet(argc: Int, size: Int): Int

@WasmImport("wasi_snapshot_preview1", "args_get")
private external fun argsGet(argv: Int, buf: Int): Int

@WasmImport("wasi_snapshot_preview1", "proc_exit")
private external fun procExit(code: Int)

/** One line the plugin logged: level 0 trace ... 4 error. */
data class LogLine(val level: Int, val message: String)

/** One event the plugin published (the topic as the plugin named it). */
class Event(val topic: String, val payload: ByteArray) {
    fun text(): String = payload.decodeToString()
}

/** One task the plugin enqueued (none runs in a test). */
class Task(val id: Long, val handler: String, val payload: ByteArray, val delayMs: Long,
           val cancelled: Boolean)

/** A statement the plugin is about to run, for [Host.setSql]'s answer. */
class SqlCall(val connector: String, val sql: String, val params: List<Any?>, val query: Boolean,
              val tx: Long?)

/** A statement the host ran (BEGIN, COMMIT and ROLLBACK too; `tx` numbered from 1). */
class Statement(val connector: String, val sql: String, val params: List<Any?>, val tx: Long?)

/** A handler: `::greet`. */
typealias Handler = (Int, Int) -> Long

/** The running test's host; a new one starts from nothing (no config, secrets, log, kv,
 *  events, tasks, statements or Redis keys). */
class Host {
    private val routes = HashMap<String, Triple<Int, String, Map<String, String>>>()
    private var sql: ((SqlCall) -> Any?)? = null

    /** The message of the last call that failed. */
    var lastError: String? = null
        private set

    init {
        ctlReset()
        TestHooks.http = { answerHttp(it) }
        TestHooks.sql = { conn, req, query -> answerSql(conn, req, query) }
    }

    /** Config `key` (a dotted path, "db.port", as the plugin reads it) set to `text`. */
    fun setConfig(key: String, text: String) {
        withText(key) { k, kl -> withText(text) { v, vl -> ctlConfigSet(k, kl, v, vl) } }
    }

    /** The whole config section. */
    fun setConfig(values: Map<String, Any?>) {
        withText(Json.stringify(values)) { p, l -> ctlSetConfig(p, l) }
    }

    /** Exposes secret `name` with `value` (names never set are DENIED, as on the host). */
    fun setSecret(name: String, value: String) {
        withText(name) { n, nl -> withText(value) { v, vl -> ctlSetSecret(n, nl, v, vl, 1) } }
    }

    /** Exposes secret `name` without a value (the plugin reads null). */
    fun exposeSecret(name: String) {
        withText(name) { n, nl -> ctlSetSecret(n, nl, 0, 0, 0) }
    }

    /** Lines below `level` are dropped (info by default, as the host's grant). */
    fun setLogLevel(level: Int) = ctlSetLogLevel(level)

    /** HTTP to `url` (or "connector:path" through a connector) answers `status` and `body`;
     *  any other request fails UNAVAILABLE. */
    fun setHttp(url: String, status: Int = 200, body: String = "",
                headers: Map<String, String> = emptyMap()) {
        routes[url] = Triple(status, body, headers)
    }

    /** SQL statements are answered by `answer`: a query's `{"columns": [{"name", "type"}],
     *  "rows": [[...]]}`, an execute's `{"rows_affected": n}` (a Map, or its JSON text). */
    fun setSql(answer: (SqlCall) -> Any?) {
        sql = answer
    }

    /** Statements on connector `name` are judged by the grammar of `kind` (postgres, mysql). */
    fun setSqlKind(name: String, kind: String) {
        withText(name) { n, nl -> withText(kind) { k, kl -> ctlSqlKind(n, nl, k, kl) } }
    }

    fun kvSet(key: String, value: String) {
        withText(key) { k, kl -> withText(value) { v, vl -> ctlKvSet(k, kl, v, vl) } }
    }

    /** The kv value at `key`, or null. */
    fun kvGet(key: String): String? = keyed(key) { k, kl, out, cap -> ctlKvGet(k, kl, out, cap) }

    /** Redis: the string at `key` as the plugin names it (null: no key, or not a string). */
    fun redisGet(key: String): String? = keyed(key) { k, kl, out, cap -> ctlRedisGet(k, kl, out, cap) }

    fun redisSet(key: String, value: String) {
        withText(key) { k, kl -> withText(value) { v, vl -> ctlRedisSet(k, kl, v, vl) } }
    }

    /** Redis: TTL in seconds (the clock does not move), -1 for none, -2 for no key. */
    fun redisTtl(key: String): Long = withText(key) { k, kl -> ctlRedisTtl(k, kl) }

    /** Calls `handler` with `input`: its output, or null with [lastError] set when it failed. */
    fun tryCall(handler: Handler, input: ByteArray): ByteArray? {
        val packed = withBytes(input) { p, l -> handler(p, l) }
        val ptr = (packed ushr 32).toInt()
        val len = (packed and 0x7FFF_FFFFL).toInt()
        val out = if (ptr == 0) ByteArray(0) else GuestMemory.read(ptr, len)
        if (packed and (1L shl 31) != 0L) {
            lastError = out.decodeToString()
            return null
        }
        return out
    }

    /** Calls `handler` with `input`: its output; the test fails when the handler failed. */
    fun call(handler: Handler, input: String = "{}"): String =
        tryCall(handler, input.encodeToByteArray())?.decodeToString()
            ?: failTest("the handler failed: $lastError")

    /** [call] with a JSON object in and out (the test fails when the output is no object). */
    fun callJson(handler: Handler, input: Map<String, Any?> = emptyMap()): Map<String, Any?> {
        val out = call(handler, Json.stringify(input))
        @Suppress("UNCHECKED_CAST")
        return Json.parse(out) as? Map<String, Any?> ?: failTest("the handler answered no JSON object: $out")
    }

    /** Calls `handler`, expecting it to fail: its error message. */
    fun callError(handler: Handler, input: String = "{}"): String {
        val out = tryCall(handler, input.encodeToByteArray())
        if (out != null) failTest("expected the handler to fail, it answered ${out.decodeToString()}")
        return lastError ?: ""
    }

    /** The lines logged so far, oldest first. */
    fun logs(): List<LogLine> = table { ctlLogs(it.first, it.second) }.map {
        LogLine(num(it[0]).toInt(), it[1] as String)
    }

    /** The events published so far, oldest first. */
    fun published(): List<Event> = table { ctlEvents(it.first, it.second) }.map {
        Event(it[0] as String, Base64.decode(it[1] as String))
    }

    /** The tasks enqueued so far, oldest first. */
    fun tasks(): List<Task> = table { ctlTasks(it.first, it.second) }.map {
        Task(num(it[0]), it[1] as String, Base64.decode(it[2] as String), num(it[3]), it[4] == true)
    }

    /** The SQL statements the host ran, oldest first. */
    fun sqlStatements(): List<Statement> = table { ctlSqlStatements(it.first, it.second) }.map {
        Statement(it[0] as String, it[1] as String, it[2] as? List<Any?> ?: emptyList(),
                  (it[3] as? Long))
    }

    private fun num(v: Any?): Long = (v as? Long) ?: (v as? Double)?.toLong() ?: 0L

    private inline fun keyed(key: String, crossinline read: (Int, Int, Int, Int) -> Int): String? {
        val (n, bytes) = withText(key) { k, kl -> readInto { out, cap -> read(k, kl, out, cap) } }
        return if (n < 0 || bytes == null) null else bytes.decodeToString()
    }

    private inline fun table(crossinline read: (Pair<Int, Int>) -> Int): List<List<Any?>> {
        val (n, bytes) = readInto { out, cap -> read(Pair(out, cap)) }
        if (n < 0 || bytes == null) return emptyList()
        val rows = Json.parse(bytes.decodeToString()) as? List<*> ?: return emptyList()
        return rows.map { it as? List<Any?> ?: emptyList() }
    }

    // The answers only the test knows, handed to the host just before the request.
    private fun answerHttp(request: String) {
        val req = Json.parse(request) as? Map<*, *> ?: return
        val target = req["url"] as? String ?: "${req["connector"] ?: ""}:${req["path"] ?: ""}"
        val route = routes[target]
        if (route == null) {
            withText("UNAVAILABLE: $target: the test gave no setHttp answer for it") { p, l ->
                ctlHttpAnswer(p, l, 0, 0, 1)
            }
            return
        }
        val head = Json.stringify(mapOf("status" to route.first,
                                        "headers" to route.third.entries.map { listOf(it.key, it.value) }))
        withText(head) { h, hl -> withText(route.second) { b, bl -> ctlHttpAnswer(h, hl, b, bl, 0) } }
    }

    private fun answerSql(conn: String, request: String, query: Boolean) {
        val answer = sql ?: return  // the host says the test gave no answer
        val req = Json.parse(request) as? Map<*, *> ?: return
        val call = SqlCall(conn, req["sql"] as? String ?: "", req["params"] as? List<Any?> ?: emptyList(),
                           query, req["tx"] as? Long)
        val given = answer(call)
        val text = if (given is String) given else Json.stringify(given)
        withText(text) { p, l -> ctlSqlAnswer(p, l, 0) }
    }
}

/** Ends the test as failed with `message`. */
fun failTest(message: String): Nothing {
    Log.write(Log.ERROR, "abort: $message")
    procExit(1)
    throw IllegalStateException(message)  // never reached: proc_exit ends the run
}

private fun shown(value: Any?): String = when (value) {
    is String -> Json.stringify(value)
    is ByteArray -> "bytes " + Json.stringify(value.decodeToString())
    else -> Json.stringify(value)
}

private fun same(expected: Any?, actual: Any?): Boolean =
    if (expected is ByteArray && actual is ByteArray) expected.contentEquals(actual)
    else expected == actual || (expected != null && actual != null &&
                                Json.stringify(expected) == Json.stringify(actual) &&
                                expected !is String && actual !is String)

private fun said(message: String?): String = if (message.isNullOrEmpty()) "" else "$message: "

/** `actual` equals `expected` (maps, lists and numbers compared as the JSON they make). */
fun assertEquals(expected: Any?, actual: Any?, message: String? = null) {
    if (!same(expected, actual)) failTest("${said(message)}expected ${shown(expected)}, got ${shown(actual)}")
}

fun assertNotEquals(unexpected: Any?, actual: Any?, message: String? = null) {
    if (same(unexpected, actual)) failTest("${said(message)}expected anything but ${shown(actual)}")
}

fun assertTrue(condition: Boolean, message: String? = null) {
    if (!condition) failTest(message ?: "expected true")
}

fun assertFalse(condition: Boolean, message: String? = null) {
    if (condition) failTest(message ?: "expected false")
}

fun assertNull(actual: Any?, message: String? = null) {
    if (actual != null) failTest("${said(message)}expected null, got ${shown(actual)}")
}

fun <T : Any> assertNotNull(actual: T?, message: String? = null): T =
    actual ?: failTest(message ?: "expected a value, got null")

/** `text` contains `part`. */
fun assertContains(text: String, part: String, message: String? = null) {
    if (!text.contains(part)) failTest("${said(message)}expected ${shown(text)} to contain ${shown(part)}")
}

/** The program's arguments after its name. */
private fun args(): List<String> = withBlock(8) { sizes ->
    if (argsSizesGet(sizes, sizes + 4) != 0) return@withBlock emptyList()
    val argc = GuestMemory.readInt(sizes)
    val size = GuestMemory.readInt(sizes + 4)
    withBlock(maxOf(argc, 1) * 4) { argv ->
        withBlock(maxOf(size, 1)) { buf ->
            if (argsGet(argv, buf) != 0) return@withBlock emptyList<String>()
            val all = GuestMemory.read(buf, size)
            val out = ArrayList<String>()
            var start = 0
            for (i in all.indices) if (all[i] == 0.toByte()) {
                out.add(all.copyOfRange(start, i).decodeToString())
                start = i + 1
            }
            out.drop(1)
        }
    }
}

/**
 * The test program's `main` (written by `omnicore test`): `--list` prints the tests' names,
 * one a line; `--run I` runs test I (the runner runs each alone in a fresh instance).
 */
fun runTests(tests: List<Pair<String, () -> Unit>>) {
    val given = args()
    when (given.firstOrNull()) {
        "--list" -> tests.forEach { println(it.first) }
        "--run" -> {
            val i = given.getOrNull(1)?.toIntOrNull()
            val test = if (i == null) null else tests.getOrNull(i)
            if (test == null) failTest("no test ${given.getOrNull(1)}")
            test.second()
        }
        else -> {
            println("a Kotlin test program: run it with omnicore test (arguments --list, --run I)")
            procExit(2)
        }
    }
}
