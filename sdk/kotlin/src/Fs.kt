// omnicore SDK for Kotlin/Wasm: files in the directories the operator granted (the `fs`
// grant, specs/abi.md §6): WASI preview 1's own functions, which the host serves over each
// granted directory (a preopen, fd 3 on). Kotlin/Wasm's WASI standard library has no file API,
// so the SDK calls WASI itself. Paths are the guest's: "/data/notes.txt" for a directory
// granted as "/data". Without the grant there are no preopens and every call is NOT_FOUND.
@file:OptIn(kotlin.wasm.ExperimentalWasmInterop::class)

package omnicore

import kotlin.wasm.WasmImport

@WasmImport("wasi_snapshot_preview1", "fd_prestat_get")
private external fun fdPrestatGet(fd: Int, buf: Int): Int

@WasmImport("wasi_snapshot_preview1", "fd_prestat_dir_name")
private external fun fdPrestatDirName(fd: Int, path: Int, len: Int): Int

@WasmImport("wasi_snapshot_preview1", "path_open")
private external fun pathOpen(fd: Int, dirflags: Int, path: Int, pathLen: Int, oflags: Int,
                              rightsBase: Long, rightsInheriting: Long, fdflags: Int, opened: Int): Int

@WasmImport("wasi_snapshot_preview1", "fd_read")
private external fun fdRead(fd: Int, iovs: Int, iovsLen: Int, nread: Int): Int

@WasmImport("wasi_snapshot_preview1", "fd_write")
private external fun fdWrite(fd: Int, iovs: Int, iovsLen: Int, nwritten: Int): Int

@WasmImport("wasi_snapshot_preview1", "fd_close")
private external fun fdClose(fd: Int): Int

@WasmImport("wasi_snapshot_preview1", "fd_readdir")
private external fun fdReaddir(fd: Int, buf: Int, bufLen: Int, cookie: Long, used: Int): Int

@WasmImport("wasi_snapshot_preview1", "path_unlink_file")
private external fun pathUnlinkFile(fd: Int, path: Int, pathLen: Int): Int

@WasmImport("wasi_snapshot_preview1", "path_create_directory")
private external fun pathCreateDirectory(fd: Int, path: Int, pathLen: Int): Int

/** Files under the granted directories: NOT_FOUND (no such file, or outside every granted
 *  directory), DENIED (a read-only directory, a path leaving the directory, a symlink),
 *  INVALID, UNAVAILABLE (any other WASI errno, named in the message). */
object Fs {
    private const val RIGHT_FD_READ = 1L shl 1
    private const val RIGHT_FD_SEEK = 1L shl 2
    private const val RIGHT_FD_TELL = 1L shl 5
    private const val RIGHT_FD_WRITE = 1L shl 6
    private const val RIGHT_FD_READDIR = 1L shl 14
    private const val RIGHT_FD_FILESTAT_GET = 1L shl 21
    private const val RIGHT_FD_FILESTAT_SET_SIZE = 1L shl 22
    private const val O_CREAT = 1
    private const val O_DIRECTORY = 2
    private const val O_TRUNC = 8
    private const val FDFLAG_APPEND = 1
    private const val CHUNK = 65536

    private var preopens: List<Pair<String, Int>>? = null

    /** The granted directories as the guest names them ("/data"), in grant order. */
    fun roots(): List<String> = opened().map { it.first }

    /** The file's bytes. */
    fun read(path: String): Result<ByteArray> =
        open(path, 0, RIGHT_FD_READ or RIGHT_FD_SEEK or RIGHT_FD_TELL or RIGHT_FD_FILESTAT_GET, 0)
            .fold(onSuccess = { fd -> readAll(fd, path).also { fdClose(fd) } },
                  onFailure = { Result.failure(it) })

    fun readText(path: String): Result<String> = read(path).map { it.decodeToString() }

    /** Writes `bytes` to the file, made if absent, replaced (or added to, with `append`). */
    fun write(path: String, bytes: ByteArray, append: Boolean = false): Result<Unit> =
        open(path, if (append) O_CREAT else O_CREAT or O_TRUNC,
             RIGHT_FD_WRITE or RIGHT_FD_SEEK or RIGHT_FD_TELL or RIGHT_FD_FILESTAT_GET or
                 RIGHT_FD_FILESTAT_SET_SIZE,
             if (append) FDFLAG_APPEND else 0)
            .fold(onSuccess = { fd -> writeAll(fd, bytes, path).also { fdClose(fd) } },
                  onFailure = { Result.failure(it) })

    fun write(path: String, text: String, append: Boolean = false): Result<Unit> =
        write(path, text.encodeToByteArray(), append)

    /** The names in directory `path` (without "." and ".."), sorted. */
    fun list(path: String): Result<List<String>> {
        val fd = open(path, O_DIRECTORY, RIGHT_FD_READDIR, 0).getOrElse { return Result.failure(it) }
        val names = ArrayList<String>()
        var cookie = 0L
        var failed: Result<List<String>>? = null
        withBlock(CHUNK + 8) { buf ->
            val used = buf + CHUNK
            while (true) {
                val errno = fdReaddir(fd, buf, CHUNK, cookie, used)
                if (errno != 0) {
                    failed = errnoFailure(errno, path)
                    break
                }
                val n = GuestMemory.readInt(used)
                var at = 0
                var whole = false
                while (at + 24 <= n) {
                    val next = GuestMemory.readLong(buf + at)
                    val nameLen = GuestMemory.readInt(buf + at + 16)
                    if (at + 24 + nameLen > n) break  // cut off: read again from its cookie
                    val name = GuestMemory.read(buf + at + 24, nameLen).decodeToString()
                    if (name != "." && name != "..") names.add(name)
                    cookie = next
                    at += 24 + nameLen
                    whole = at == n
                }
                if (n < CHUNK && (whole || n == 0)) break
                if (at == 0) break  // one entry larger than the buffer: stop rather than loop
            }
        }
        fdClose(fd)
        return failed ?: Result.success(names.sorted())
    }

    /** Deletes the file. */
    fun delete(path: String): Result<Unit> = atDir(path) { dir, rel ->
        withText(rel) { p, l -> pathUnlinkFile(dir, p, l) }
    }

    /** Makes directory `path` (its parent must exist). */
    fun mkdir(path: String): Result<Unit> = atDir(path) { dir, rel ->
        withText(rel) { p, l -> pathCreateDirectory(dir, p, l) }
    }

    private inline fun atDir(path: String, call: (Int, String) -> Int): Result<Unit> {
        val (dir, rel) = resolve(path) ?: return refused(HostError.NOT_FOUND, "$path: outside the granted directories")
        val errno = call(dir, rel)
        return if (errno == 0) Result.success(Unit) else errnoFailure(errno, path)
    }

    private fun open(path: String, oflags: Int, rights: Long, fdflags: Int): Result<Int> {
        val (dir, rel) = resolve(path) ?: return refused(HostError.NOT_FOUND, "$path: outside the granted directories")
        return withBlock(8) { out ->
            val errno = withText(rel) { p, l -> pathOpen(dir, 0, p, l, oflags, rights, 0L, fdflags, out) }
            if (errno == 0) Result.success(GuestMemory.readInt(out)) else errnoFailure(errno, path)
        }
    }

    private fun readAll(fd: Int, path: String): Result<ByteArray> {
        val parts = ArrayList<ByteArray>()
        var total = 0
        var failed: Result<ByteArray>? = null
        withBlock(CHUNK + 16) { buf ->
            val iov = buf + CHUNK
            while (true) {
                GuestMemory.writeInt(iov, buf)
                GuestMemory.writeInt(iov + 4, CHUNK)
                val errno = fdRead(fd, iov, 1, iov + 8)
                if (errno != 0) {
                    failed = errnoFailure(errno, path)
                    break
                }
                val n = GuestMemory.readInt(iov + 8)
                if (n <= 0) break
                parts.add(GuestMemory.read(buf, n))
                total += n
            }
        }
        failed?.let { return it }
        val out = ByteArray(total)
        var at = 0
        for (part in parts) {
            part.copyInto(out, at)
            at += part.size
        }
        return Result.success(out)
    }

    private fun writeAll(fd: Int, bytes: ByteArray, path: String): Result<Unit> = withBytes(bytes) { p, len ->
        withBlock(16) { iov ->
            var done = 0
            while (done < len) {
                GuestMemory.writeInt(iov, p + done)
                GuestMemory.writeInt(iov + 4, len - done)
                val errno = fdWrite(fd, iov, 1, iov + 8)
                if (errno != 0) return@withBlock errnoFailure<Unit>(errno, path)
                val n = GuestMemory.readInt(iov + 8)
                if (n <= 0) return@withBlock refused<Unit>(HostError.UNAVAILABLE, "$path: short write")
                done += n
            }
            Result.success(Unit)
        }
    }

    /** The preopen holding `path` and the path relative to it. */
    private fun resolve(path: String): Pair<Int, String>? {
        for ((root, fd) in opened().sortedByDescending { it.first.length }) {
            val base = root.trimEnd('/')
            if (path == base || path == root) return Pair(fd, ".")
            if (path.startsWith("$base/")) return Pair(fd, path.substring(base.length + 1).ifEmpty { "." })
        }
        return null
    }

    private fun opened(): List<Pair<String, Int>> {
        preopens?.let { return it }
        val found = ArrayList<Pair<String, Int>>()
        withBlock(8) { buf ->
            var fd = 3
            while (fdPrestatGet(fd, buf) == 0) {
                val len = GuestMemory.readInt(buf + 4)
                val name = withBlock(maxOf(len, 1)) { p ->
                    if (fdPrestatDirName(fd, p, len) == 0) GuestMemory.read(p, len).decodeToString() else ""
                }
                if (GuestMemory.read(buf, 1)[0].toInt() == 0) found.add(Pair(name.trimEnd('\u0000'), fd))
                fd++
            }
        }
        preopens = found
        return found
    }

    private fun <T> errnoFailure(errno: Int, path: String): Result<T> = when (errno) {
        44 -> refused(HostError.NOT_FOUND, "$path: no such file or directory")
        2, 63, 69, 76 -> refused(HostError.DENIED, "$path: not allowed (WASI errno $errno)")
        28, 54, 31 -> refused(HostError.INVALID, "$path: WASI errno $errno")
        else -> refused(HostError.UNAVAILABLE, "$path: WASI errno $errno")
    }
}
