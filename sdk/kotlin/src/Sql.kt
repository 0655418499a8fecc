// omnicore SDK for Kotlin/Wasm: the database connectors (`omnicore:sql`, `omnicore:redis`,
// specs/abi.md §4.10, §4.11). The plugin names a connector the operator declared and granted;
// the host holds its URL and password. Statements are parameterized only: `$1, $2, ...` on
// PostgreSQL, `?` on MySQL/MariaDB, every value a parameter (§4.10.1: Kotlin cannot tell a
// constant from a built string, so keep statements literals).
@file:OptIn(kotlin.wasm.ExperimentalWasmInterop::class, kotlin.io.encoding.ExperimentalEncodingApi::class)

package omnicore

import kotlin.io.encoding.Base64
import kotlin.wasm.WasmImport

@WasmImport("omnicore:sql", "query")
private external fun sqlQuery(conn: Int, connLen: Int, req: Int, reqLen: Int): Long

@WasmImport("omnicore:sql", "execute")
private external fun sqlExecute(conn: Int, connLen: Int, req: Int, reqLen: Int): Long

@WasmImport("omnicore:sql", "begin")
private external fun sqlBegin(conn: Int, connLen: Int): Long

@WasmImport("omnicore:sql", "commit")
private external fun sqlCommit(tx: Long): Int

@WasmImport("omnicore:sql", "rollback")
private external fun sqlRollback(tx: Long): Int

@WasmImport("omnicore:redis", "command")
private external fun redisCommand(conn: Int, connLen: Int, req: Int, reqLen: Int): Long

/** A result column: its name and the database's type name (`int4`, `text`, ...). */
class Column(val name: String, val type: String)

/** A query's rows: each a list of the columns' values (null, Boolean, Long, Double, String,
 *  ByteArray, or an [Sql.Json], [Sql.Timestamp], [Sql.Date], [Sql.Time], [Sql.Decimal]). */
class Rows(val columns: List<Column>, val rows: List<List<Any?>>) {
    val size: Int get() = rows.size

    /** Row `i`'s value of column `name` (null when there is no such column). */
    operator fun get(i: Int, name: String): Any? {
        val c = columns.indexOfFirst { it.name == name }
        return if (c < 0) null else rows[i][c]
    }

    /** Each row as a map from column name to value. */
    fun maps(): List<Map<String, Any?>> = rows.map { row ->
        val m = LinkedHashMap<String, Any?>()
        columns.forEachIndexed { i, c -> m[c.name] = row.getOrNull(i) }
        m
    }
}

/** What an `execute` changed. */
class Executed(val rowsAffected: Long, val lastInsertId: Long?)

/** SQL connectors, and the typed values §4.10 tags (JSON has no such types). */
object Sql {
    /** Connector `name` (kind `postgres` or `mysql`, granted by `sql: {connectors: [name]}`). */
    fun connect(name: String): Database = Database(name)

    data class Json(val value: Any?)
    data class Timestamp(val text: String)
    data class Date(val text: String)
    data class Time(val text: String)
    data class Decimal(val text: String)

    internal fun encode(value: Any?): Any? = when (value) {
        is ByteArray -> mapOf("\$bytes" to Base64.encode(value))
        is Json -> mapOf("\$json" to value.value)
        is Timestamp -> mapOf("\$timestamp" to value.text)
        is Date -> mapOf("\$date" to value.text)
        is Time -> mapOf("\$time" to value.text)
        is Decimal -> mapOf("\$decimal" to value.text)
        else -> value
    }

    internal fun decode(value: Any?): Any? {
        val tagged = value as? Map<*, *> ?: return value
        if (tagged.size != 1) return value
        val (tag, inner) = tagged.entries.first()
        val text = inner as? String ?: ""
        return when (tag) {
            "\$bytes" -> Base64.decode(text)
            "\$json" -> Json(inner)
            "\$timestamp" -> Timestamp(text)
            "\$date" -> Date(text)
            "\$time" -> Time(text)
            "\$decimal" -> Decimal(text)
            else -> value
        }
    }

    internal fun request(sql: String, params: Array<out Any?>, tx: Long?): String {
        val req = linkedMapOf<String, Any?>("sql" to sql, "params" to params.map { encode(it) })
        if (tx != null) req["tx"] = tx
        return omnicore.Json.stringify(req)
    }

    internal fun query(conn: String, sql: String, params: Array<out Any?>, tx: Long?): Result<Rows> {
        val req = request(sql, params, tx)
        TestHooks.sql?.invoke(conn, req, true)
        val packed = withText(conn) { c, cl -> withText(req) { r, rl -> sqlQuery(c, cl, r, rl) } }
        return takeJson(packed, "sql.query").map { answer ->
            val m = objectOf(answer)
            Rows((m["columns"] as? List<*> ?: emptyList<Any?>()).map {
                     val col = objectOf(it)
                     Column(col["name"] as? String ?: "", col["type"] as? String ?: "")
                 },
                 (m["rows"] as? List<*> ?: emptyList<Any?>()).map { row ->
                     (row as? List<*> ?: emptyList<Any?>()).map { decode(it) }
                 })
        }
    }

    internal fun execute(conn: String, sql: String, params: Array<out Any?>, tx: Long?): Result<Executed> {
        val req = request(sql, params, tx)
        TestHooks.sql?.invoke(conn, req, false)
        val packed = withText(conn) { c, cl -> withText(req) { r, rl -> sqlExecute(c, cl, r, rl) } }
        return takeJson(packed, "sql.execute").map { answer ->
            val m = objectOf(answer)
            Executed(longOf(m["rows_affected"]) ?: 0, longOf(m["last_insert_id"]))
        }
    }
}

/** A SQL connector: statements run on a pooled connection of the host's. */
class Database internal constructor(val name: String) {
    /** Rows of `sql` with `params` (`$1`... or `?`). */
    fun query(sql: String, vararg params: Any?): Result<Rows> = Sql.query(name, sql, params, null)

    /** Runs `sql`: rows affected (and MySQL's last insert id). */
    fun execute(sql: String, vararg params: Any?): Result<Executed> = Sql.execute(name, sql, params, null)

    /** Opens a transaction, rolled back by the host when the call ends without [Transaction.commit]. */
    fun begin(): Result<Transaction> {
        val tx = withText(name) { c, cl -> sqlBegin(c, cl) }
        return if (tx >= 1) Result.success(Transaction(name, tx)) else refused(tx.toInt(), "begin on $name")
    }
}

/** An open transaction on one connector. */
class Transaction internal constructor(val connector: String, val id: Long) {
    fun query(sql: String, vararg params: Any?): Result<Rows> = Sql.query(connector, sql, params, id)

    fun execute(sql: String, vararg params: Any?): Result<Executed> = Sql.execute(connector, sql, params, id)

    /** Commits; UNAVAILABLE when the commit failed (the transaction is gone). */
    fun commit(): Result<Unit> = done(sqlCommit(id), "commit")

    fun rollback(): Result<Unit> = done(sqlRollback(id), "rollback")

    private fun done(status: Int, what: String): Result<Unit> =
        if (status == 0) Result.success(Unit) else refused(status, "$what of transaction $id on $connector")
}

/** Redis connectors: every key under the plugin's prefix (the host adds it). */
object Redis {
    /** Connector `name` (kind `redis`, granted by `redis: {connectors: [name]}`). */
    fun connect(name: String): RedisConnector = RedisConnector(name)
}

/** One Redis connector; replies are JSON values (a binary string is a ByteArray). */
class RedisConnector internal constructor(val name: String) {
    /** Any allowed command (§4.11): `command("INCRBY", "visits", 1)`; its reply. */
    fun command(cmd: String, vararg args: Any?): Result<Any?> {
        val req = Json.stringify(mapOf("cmd" to cmd, "args" to args.map { Sql.encode(it) }))
        val packed = withText(name) { c, cl -> withText(req) { r, rl -> redisCommand(c, cl, r, rl) } }
        return takeJson(packed, "redis").map { decodeReply(it) }
    }

    fun get(key: String): Result<String?> = command("GET", key).map { it as? String }

    fun set(key: String, value: Any): Result<Unit> = command("SET", key, value).map { }

    /** `SET key value EX seconds`. */
    fun setEx(key: String, value: Any, seconds: Long): Result<Unit> =
        command("SET", key, value, "EX", seconds).map { }

    fun incr(key: String, by: Long = 1): Result<Long> = command("INCRBY", key, by).map { longOf(it) ?: 0 }

    fun del(vararg keys: String): Result<Long> = command("DEL", *keys).map { longOf(it) ?: 0 }

    fun expire(key: String, seconds: Long): Result<Boolean> = command("EXPIRE", key, seconds).map { it == 1L }

    fun ttl(key: String): Result<Long> = command("TTL", key).map { longOf(it) ?: -2 }

    private fun decodeReply(value: Any?): Any? = when (value) {
        is List<*> -> value.map { decodeReply(it) }
        is Map<*, *> -> if (value.size == 1 && value.containsKey("\$bytes")) Sql.decode(value)
                        else value.entries.associate { (k, v) -> k.toString() to decodeReply(v) }
        else -> value
    }
}
