// The Kotlin SDK's probe (tests/sdk/test_kotlin.py): what the examples do not reach, every
// capability's wrapper through the real host.
@file:OptIn(kotlin.wasm.ExperimentalWasmInterop::class)

import kotlin.wasm.WasmExport
import omnicore.Events
import omnicore.Fs
import omnicore.HostError
import omnicore.Http
import omnicore.Kv
import omnicore.Mcp
import omnicore.Memory
import omnicore.Redis
import omnicore.Secrets
import omnicore.Sql
import omnicore.Tasks
import omnicore.Tier
import omnicore.Vectors
import omnicore.fail
import omnicore.handle
import omnicore.handleBytes
import omnicore.json
import omnicore.omniAlloc
import omnicore.omniFree

/** A Result as the tests read it: its value, or the failure's status name. */
private fun <T> shown(result: Result<T>, value: (T) -> Any? = { it }): Any? =
    result.fold(onSuccess = value, onFailure = { (it as HostError).code })

/** kv: set, get, incr, list, delete. */
@WasmExport
fun kv(ptr: Int, len: Int): Long = handle(ptr, len) { input ->
    val key = input["key"] as? String ?: return@handle fail("key must be a string")
    Kv.set(key, input["value"] as? String ?: "").onFailure { return@handle fail(it) }
    json("get" to Kv.getString(key), "missing" to Kv.getString("$key-absent"),
         "incr" to Kv.incr("$key-n", 5), "list" to Kv.list(key), "delete" to Kv.delete(key),
         "after" to Kv.getString(key))
}

/** http: a GET and a POST to the URL given; the host answers through omni_alloc. */
@WasmExport
fun fetch(ptr: Int, len: Int): Long = handle(ptr, len) { input ->
    val url = input["url"] as? String ?: return@handle fail("url must be a string")
    val got = Http.get(url).getOrElse { return@handle fail(it) }
    val posted = Http.post(url, "payload").getOrElse { return@handle fail(it) }
    json("get" to "${got.status} ${got.text()}", "post" to "${posted.status} ${posted.text()}",
         "method" to posted.headers["x-method"])
}

/** secrets, events, tasks, memory, vectors, mcp and an http connector, each as the tests read it. */
@WasmExport
fun tour(ptr: Int, len: Int): Long = handle(ptr, len) { _ ->
    val out = linkedMapOf<String, Any?>()
    out["secret"] = shown(Secrets.getString("token"))
    out["secret.unset"] = shown(Secrets.get("unset"))
    out["secret.hidden"] = shown(Secrets.get("api_token"))
    out["secret.bad"] = shown(Secrets.get("no/such"))
    out["events"] = shown(Events.publishJson("order.created", json("id" to 7))) { "ok" }
    out["events.denied"] = shown(Events.publish("audit.x", "{}")) { "ok" }
    val id = Tasks.enqueue("tour", "later", delayMs = 60_000).getOrElse { return@handle fail(it) }
    out["tasks.cancel"] = shown(Tasks.cancel(id))
    out["tasks.unknown"] = shown(Tasks.cancel(id + 1000))
    out["tasks.nohandler"] = shown(Tasks.enqueue("nope"))
    val memory = Memory.remember("likes green tea", Tier.LONG, json("who" to "ada"), importance = 0.9)
        .getOrElse { return@handle fail(it) }
    val recalled = Memory.recall("green tea", limit = 5).getOrElse { return@handle fail(it) }
    out["memory.recall"] = recalled.map { listOf(it.id == memory, it.tier.name, it.text, it.metadata["who"]) }
    out["memory.empty"] = shown(Memory.remember(""))
    out["memory.forget"] = Memory.forget(memory)
    out["memory.again"] = Memory.forget(memory)
    out["vectors.upsert"] = shown(Vectors.upsert("docs", "a", floatArrayOf(1f, 0f, 0f), json("kind" to "x"))) { "ok" }
    Vectors.upsert("docs", "b", floatArrayOf(0f, 1f, 0f), json("kind" to "y"))
    out["vectors.search"] = shown(Vectors.search("docs", floatArrayOf(0.9f, 0.1f, 0f), 2)) { hits ->
        hits.map { listOf(it.id, it.metadata["kind"], it.score > 0.5) }
    }
    out["vectors.query"] = shown(Vectors.query("docs", floatArrayOf(0.9f, 0.1f, 0f), 2, json("kind" to "y"))) { hits ->
        hits.map { it.id }
    }
    out["vectors.dim"] = shown(Vectors.upsert("docs", "c", floatArrayOf(1f, 2f))) { "ok" }
    out["vectors.missing"] = shown(Vectors.search("nothing", floatArrayOf(1f), 1))
    out["vectors.delete"] = shown(Vectors.delete("docs", "a"))
    out["vectors.delete.none"] = shown(Vectors.delete("nothing", "a"))
    out["mcp.progress"] = Mcp.progress(1.0, 2.0, "half way")
    out["mcp.ask"] = shown(Mcp.ask(json("method" to "roots/list", "params" to json())))
    out["http.connector"] = shown(Http.connector("local", "GET", "/via")) { "${it.status} ${it.text()}" }
    out["http.denied"] = shown(Http.get("https://example.com/"))
    out
}

/** fs: the granted directories through WASI (read-only /in, writable /out). */
@WasmExport
fun files(ptr: Int, len: Int): Long = handle(ptr, len) { _ ->
    val out = linkedMapOf<String, Any?>()
    out["roots"] = Fs.roots()
    out["read"] = shown(Fs.readText("/in/a.txt"))
    out["missing"] = shown(Fs.read("/in/none.txt"))
    out["outside"] = shown(Fs.read("/etc/passwd"))
    out["escape"] = shown(Fs.read("/in/../secret.txt"))
    out["readonly"] = shown(Fs.write("/in/new.txt", "x")) { "ok" }
    out["write"] = shown(Fs.write("/out/b.txt", "written")) { "ok" }
    out["append"] = shown(Fs.write("/out/b.txt", " twice", append = true)) { "ok" }
    out["mkdir"] = shown(Fs.mkdir("/out/sub")) { "ok" }
    out["list"] = shown(Fs.list("/out"))
    out["back"] = shown(Fs.readText("/out/b.txt"))
    out["big"] = shown(Fs.write("/out/big.bin", ByteArray(200_000) { (it % 251).toByte() })) { "ok" }
    out["bigback"] = shown(Fs.read("/out/big.bin")) { bytes -> bytes.size == 200_000 && bytes[199_999] == (199_999 % 251).toByte() }
    out["delete"] = shown(Fs.delete("/out/big.bin")) { "ok" }
    out["listed"] = shown(Fs.list("/out"))
    out
}

/** sql and redis through the connectors the test's app declares (orders, cache). */
@WasmExport
fun db(ptr: Int, len: Int): Long = handle(ptr, len) { input ->
    val orders = Sql.connect("orders")
    val out = linkedMapOf<String, Any?>()
    out["create"] = shown(orders.execute("CREATE TABLE IF NOT EXISTS items (id int4 PRIMARY KEY, name text, qty int8, raw bytea, doc jsonb, day date, price numeric)")) { "ok" }
    out["insert"] = shown(orders.execute("INSERT INTO items VALUES ($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, NULL, NULL, NULL, NULL)",
                                         1, "apple", 3, byteArrayOf(0, 1, 2), Sql.Json(json("a" to 1)), Sql.Date("2026-11-24"),
                                         Sql.Decimal("12.50"), 2, "pear", 0)) { it.rowsAffected }
    out["rows"] = shown(orders.query("SELECT id, name, qty FROM items ORDER BY id")) { rows ->
        listOf(rows.columns.map { "${it.name}:${it.type}" }, rows.rows, rows.maps().map { it["name"] })
    }
    out["typed"] = shown(orders.query("SELECT raw, doc, day, price FROM items WHERE id = $1", 1)) { rows ->
        val row = rows.rows[0]
        listOf((row[0] as ByteArray).toList(), (row[1] as Sql.Json).value, (row[2] as Sql.Date).text,
               (row[3] as Sql.Decimal).text, rows[0, "price"] == Sql.Decimal("12.50"))
    }
    val tx = orders.begin().getOrElse { return@handle fail(it) }
    tx.execute("UPDATE items SET qty = qty - 1 WHERE id = $1", 1)
    out["tx.inside"] = shown(tx.query("SELECT qty FROM items WHERE id = $1", 1)) { it.rows }
    out["tx.commit"] = shown(tx.commit()) { "ok" }
    val undone = orders.begin().getOrElse { return@handle fail(it) }
    undone.execute("DELETE FROM items")
    out["tx.rollback"] = shown(undone.rollback()) { "ok" }
    out["tx.gone"] = shown(undone.commit()) { "ok" }
    out["after"] = shown(orders.query("SELECT id, qty FROM items ORDER BY id")) { it.rows }
    out["bad"] = shown(orders.query("SELECT nothing FROM nowhere"))
    out["denied"] = shown(Sql.connect("other").query("SELECT 1"))
    if (input["redis"] == true) {
        val cache = Redis.connect("cache")
        out["redis.set"] = shown(cache.set("k", "v")) { "ok" }
        out["redis.get"] = shown(cache.get("k"))
        out["redis.incr"] = shown(cache.incr("n", 5))
        out["redis.hash"] = shown(cache.command("HSET", "h", "a", "1")) 
        out["redis.all"] = shown(cache.command("HGETALL", "h"))
        out["redis.denied"] = shown(cache.command("FLUSHALL"))
        out["redis.wrong"] = shown(cache.command("LPUSH", "k", "x"))
    }
    out
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
