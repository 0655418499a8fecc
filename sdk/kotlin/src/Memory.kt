// omnicore SDK for Kotlin/Wasm: tiered memory and vector collections (`omnicore:memory`,
// `omnicore:vectors`, specs/abi.md §4.4, §4.5).
@file:OptIn(kotlin.wasm.ExperimentalWasmInterop::class)

package omnicore

import kotlin.wasm.WasmImport

@WasmImport("omnicore:memory", "remember")
private external fun memoryRemember(tier: Int, item: Int, itemLen: Int): Long

@WasmImport("omnicore:memory", "recall")
private external fun memoryRecall(query: Int, queryLen: Int, out: Int, outCap: Int): Int

@WasmImport("omnicore:memory", "forget")
private external fun memoryForget(id: Long): Int

@WasmImport("omnicore:vectors", "upsert")
private external fun vectorsUpsert(coll: Int, collLen: Int, id: Int, idLen: Int, vec: Int, dim: Int,
                                   meta: Int, metaLen: Int): Int

@WasmImport("omnicore:vectors", "search")
private external fun vectorsSearch(coll: Int, collLen: Int, vec: Int, dim: Int, k: Int): Long

@WasmImport("omnicore:vectors", "query")
private external fun vectorsQuery(coll: Int, collLen: Int, vec: Int, dim: Int, k: Int,
                                  filter: Int, filterLen: Int): Long

@WasmImport("omnicore:vectors", "delete")
private external fun vectorsDelete(coll: Int, collLen: Int, id: Int, idLen: Int): Int

/** A memory's tier: working (the instance's TTL), short-term (days), long-term (kept). */
enum class Tier { WORKING, SHORT, LONG }

/** A recalled memory, best first. `createdAt` is Unix seconds. */
class Recalled(val id: Long, val tier: Tier, val text: String, val metadata: Map<String, Any?>,
               val score: Double, val createdAt: Double)

/** Text memories for agents, ranked by relevance, recency and importance. */
object Memory {
    /** Keeps `text`: its id. INVALID for an empty text or a bad field, TOO_LARGE over the
     *  grant's limits. */
    fun remember(text: String, tier: Tier = Tier.WORKING, metadata: Map<String, Any?>? = null,
                 ttlS: Long? = null, importance: Double? = null): Result<Long> {
        val item = linkedMapOf<String, Any?>("text" to text)
        if (metadata != null) item["metadata"] = metadata
        if (ttlS != null) item["ttl_s"] = ttlS
        if (importance != null) item["importance"] = importance
        val id = withText(Json.stringify(item)) { p, l -> memoryRemember(tier.ordinal, p, l) }
        return if (id >= 1) Result.success(id) else refused(id.toInt(), "remember")
    }

    /** The memories matching `query`, best first (`limit` 1-100; `tiers` all when null;
     *  `filter`: metadata keys that must equal these values). */
    fun recall(query: String, tiers: List<Tier>? = null, limit: Int = 10,
               filter: Map<String, Any?>? = null): Result<List<Recalled>> {
        val q = linkedMapOf<String, Any?>("query" to query, "limit" to limit)
        if (tiers != null) q["tiers"] = tiers.map { it.ordinal }
        if (filter != null) q["filter"] = filter
        val (n, bytes) = withText(Json.stringify(q)) { p, l -> readInto { out, cap -> memoryRecall(p, l, out, cap) } }
        if (n < 0 || bytes == null) return refused(n, "recall")
        val rows = parsedOrRefused(bytes.decodeToString(), "recall").getOrElse { return Result.failure(it) }
        return Result.success((rows as? List<*> ?: emptyList<Any?>()).map {
            val m = objectOf(it)
            Recalled(longOf(m["id"]) ?: 0, Tier.entries[(longOf(m["tier"]) ?: 0).toInt().coerceIn(0, 2)],
                     m["text"] as? String ?: "", objectOf(m["metadata"]), doubleOf(m["score"]),
                     doubleOf(m["created_at"]))
        })
    }

    /** Forgets memory `id`: whether it existed. */
    fun forget(id: Long): Boolean = memoryForget(id) == 1
}

/** A vector search's hit: cosine similarity, higher is better. */
class Match(val id: String, val score: Double, val metadata: Map<String, Any?>)

/** Named collections of fixed-dimension float vectors (HNSW, cosine). */
object Vectors {
    /** Stores `vector` under `id` (a collection is made on first use with that dimension);
     *  INVALID for a dimension mismatch or NaN, QUOTA, TOO_LARGE. */
    fun upsert(collection: String, id: String, vector: FloatArray,
               metadata: Map<String, Any?>? = null): Result<Unit> {
        val meta = if (metadata == null) ByteArray(0) else Json.stringify(metadata).encodeToByteArray()
        val status = withText(collection) { c, cl ->
            withText(id) { i, il ->
                withFloats(vector) { v -> withBytes(meta) { m, ml -> vectorsUpsert(c, cl, i, il, v, vector.size, m, ml) } }
            }
        }
        return if (status == 0) Result.success(Unit) else refused(status, "upsert $id into $collection")
    }

    /** The `k` (1-1,000) vectors nearest `vector`; NOT_FOUND for no such collection. */
    fun search(collection: String, vector: FloatArray, k: Int = 10): Result<List<Match>> = matches(
        withText(collection) { c, cl -> withFloats(vector) { v -> vectorsSearch(c, cl, v, vector.size, k) } })

    /** [search] keeping only vectors whose metadata has every key of `filter` with that value. */
    fun query(collection: String, vector: FloatArray, k: Int, filter: Map<String, Any?>): Result<List<Match>> =
        matches(withText(collection) { c, cl ->
            withFloats(vector) { v ->
                withText(Json.stringify(filter)) { f, fl -> vectorsQuery(c, cl, v, vector.size, k, f, fl) }
            }
        })

    /** Deletes `id`: whether it was there; NOT_FOUND for no such collection. */
    fun delete(collection: String, id: String): Result<Boolean> =
        when (val status = withText(collection) { c, cl -> withText(id) { i, il -> vectorsDelete(c, cl, i, il) } }) {
            1 -> Result.success(true)
            0 -> Result.success(false)
            else -> refused(status, if (status == HostError.NOT_FOUND) "no collection $collection" else "delete $id")
        }

    private fun matches(packed: Long): Result<List<Match>> = takeJson(packed, "vectors").map { rows ->
        (rows as? List<*> ?: emptyList<Any?>()).map {
            val m = objectOf(it)
            Match(m["id"]?.toString() ?: "", doubleOf(m["score"]), objectOf(m["metadata"]))
        }
    }

    private inline fun <T> withFloats(vector: FloatArray, body: (Int) -> T): T =
        withBlock(maxOf(vector.size, 1) * 4) { p ->
            for (i in vector.indices) GuestMemory.writeInt(p + 4 * i, vector[i].toRawBits())
            body(p)
        }
}
