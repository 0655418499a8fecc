import kotlin.wasm.unsafe.Pointer
import kotlin.wasm.unsafe.UnsafeWasmMemoryApi
import omnicore.Json
import omnicore.Redis
import omnicore.Sql
import omnicore.json
import omnicore.omniAlloc
import omnicore.omniFree
import omnicore.testing.Host
import omnicore.testing.Test

private fun report(outcome: Result<Any?>) {
    outcome.fold(onSuccess = { println("CONTRACT ok ${Json.stringify(it)}") },
                 onFailure = { println("CONTRACT error ${it.message}") })
}

/** A raw request through the driver's own import, in blocks of the SDK's arena: the §3.3
 *  block read as the SDK reads one. */
@OptIn(UnsafeWasmMemoryApi::class)
private fun raw(request: String) {
    fun put(bytes: ByteArray): Int {
        val p = omniAlloc(bytes.size)
        bytes.forEachIndexed { i, b -> Pointer((p + i).toUInt()).storeByte(b) }
        return p
    }
    val conn = "cache".encodeToByteArray()
    val req = request.encodeToByteArray()
    val c = put(conn)
    val r = put(req)
    val packed = rawRedisCommand(c, conn.size, r, req.size)
    val ptr = (packed ushr 32).toInt()
    val len = (packed and 0x7FFF_FFFFL).toInt()
    val text = ByteArray(len) { Pointer((ptr + it).toUInt()).loadByte() }.decodeToString()
    omniFree(ptr, len)
    omniFree(r, req.size)
    omniFree(c, conn.size)
    println(if (packed and (1L shl 31) != 0L) "CONTRACT error $text" else "CONTRACT ok $text")
}

@Test
fun contract() {
    var answer = ""
    var host = Host()
    host.setSql { answer }
    val cache = Redis.connect("cache")
    for (line in REQUESTS) {
        val req = Json.parse(line) as Map<*, *>
        when {
            req.containsKey("reset") -> {
                host = Host()
                host.setSql { answer }
            }
            req.containsKey("sql") -> {
                answer = Json.stringify(req["sql"])
                report(Sql.connect("cache").query("SELECT").map { rows ->
                    json("columns" to rows.columns.map { json("name" to it.name, "type" to it.type) },
                         "rows" to rows.rows)
                })
            }
            else -> {
                val redis = req["redis"] as Map<*, *>
                val args = redis["args"]
                if (args is List<*>) report(cache.command(redis["cmd"] as String, *args.toTypedArray()))
                else raw(Json.stringify(redis))
            }
        }
    }
}
