// omnicore SDK for Kotlin/Wasm (WASI): the allocator pair of specs/abi.md §1.1 and guest memory.
//
// Kotlin/Wasm keeps its objects on the Wasm GC heap; linear memory is only what the host and
// the guest hand each other. Its one public allocator, kotlin.wasm.unsafe's scoped one, frees
// everything at the end of its scope and starts its top-level scope at address 0, which the
// ABI reads as "out of memory". So the SDK keeps its own arena, and makes itself the root of
// Kotlin's scoped allocators: a scope opened later (println, WASI calls of the standard
// library) starts above every block the arena holds, and no arena block is ever handed out
// twice. Both reach kotlin.wasm.unsafe's internal allocator (pinned with kotlinc 2.4.20).
@file:OptIn(kotlin.wasm.unsafe.UnsafeWasmMemoryApi::class, kotlin.wasm.ExperimentalWasmInterop::class)
@file:Suppress("INVISIBLE_MEMBER", "INVISIBLE_REFERENCE")

package omnicore

import kotlin.wasm.WasmExport
import kotlin.wasm.unsafe.Pointer

private const val PAGE = 65536
private const val CHUNK = 65536

/**
 * A stack-shaped arena over linear memory: blocks are handed out upwards; freeing the top
 * block (and every freed block under it) moves the top down. The host's input buffer lives
 * at the bottom for the instance's life; a call's blocks are freed when the call is over.
 *
 * Re-entry: `omni_alloc` runs to its end before anything else can (it calls no host
 * function), so the host may call it during any host call and the arena is whole then.
 * Growing the arena takes pages from Kotlin's root allocator, which refuses (traps) inside a
 * `withScopedMemoryAllocator` block of your own: do not call omnicore host functions there.
 */
internal object Arena {
    private var root: kotlin.wasm.unsafe.MemoryAllocator? = null
    private var top = 0
    private var end = 0
    private val starts = ArrayList<Int>()
    private val freed = ArrayList<Boolean>()

    private fun root(): kotlin.wasm.unsafe.MemoryAllocator {
        val held = root
        if (held != null) return held
        // Address 8 on: no block is ever at 0.
        val made = kotlin.wasm.unsafe.ScopedMemoryAllocator(8, null)
        kotlin.wasm.unsafe.currentAllocator = made
        root = made
        top = 8
        end = 8
        return made
    }

    private fun grow(need: Long): Boolean {
        val allocator = root()
        val chunk = ((maxOf(need, CHUNK.toLong()) + CHUNK - 1) / CHUNK) * CHUNK
        val newEnd = end.toLong() + chunk
        if (newEnd > Int.MAX_VALUE.toLong()) return false
        val pages = kotlin.wasm.internal.wasm_memory_size()
        val wanted = ((newEnd + PAGE - 1) / PAGE).toInt()
        if (wanted > pages && kotlin.wasm.internal.wasm_memory_grow(wanted - pages) == -1) {
            return false
        }
        val got = allocator.allocate(chunk.toInt()).address.toInt()
        if (got != end) return false
        end = newEnd.toInt()
        return true
    }

    fun alloc(len: Int): Int {
        if (len < 0) return 0
        root()
        val size = (len.toLong() + 7) and 7L.inv()
        val p = top
        if (p.toLong() + size > end.toLong() && !grow(p.toLong() + size - end.toLong())) return 0
        top = (p.toLong() + maxOf(size, 8L)).toInt()
        starts.add(p)
        freed.add(false)
        return p
    }

    fun free(ptr: Int) {
        if (ptr == 0) return
        var i = starts.size - 1
        while (i >= 0) {
            if (starts[i] == ptr && !freed[i]) {
                freed[i] = true
                break
            }
            i--
        }
        while (freed.isNotEmpty() && freed[freed.size - 1]) {
            top = starts.removeAt(starts.size - 1)
            freed.removeAt(freed.size - 1)
        }
    }
}

/** `omni_alloc(len) -> ptr`: 8-aligned, never 0 unless out of memory (specs/abi.md §1.1). */
@WasmExport("omni_alloc")
fun omniAlloc(len: Int): Int = Arena.alloc(len)

/** `omni_free(ptr, len)`: frees a block `omni_alloc` returned; `ptr == 0` does nothing. */
@WasmExport("omni_free")
fun omniFree(ptr: Int, len: Int) {
    Arena.free(ptr)
}

/** Linear memory: the bytes the host and the plugin hand each other. */
internal object GuestMemory {
    fun read(ptr: Int, len: Int): ByteArray =
        ByteArray(len) { Pointer((ptr + it).toUInt()).loadByte() }

    fun write(ptr: Int, bytes: ByteArray) {
        for (i in bytes.indices) Pointer((ptr + i).toUInt()).storeByte(bytes[i])
    }

    fun readLong(ptr: Int): Long = Pointer(ptr.toUInt()).loadLong()

    fun readInt(ptr: Int): Int = Pointer(ptr.toUInt()).loadInt()

    fun writeInt(ptr: Int, value: Int) = Pointer(ptr.toUInt()).storeInt(value)

    fun writeLong(ptr: Int, value: Long) = Pointer(ptr.toUInt()).storeLong(value)

    /** `bytes` copied into a new arena block: its pointer (0 for no bytes, or out of memory). */
    fun put(bytes: ByteArray): Int {
        if (bytes.isEmpty()) return 0
        val p = Arena.alloc(bytes.size)
        if (p != 0) write(p, bytes)
        return p
    }

    fun free(ptr: Int) = Arena.free(ptr)
}
