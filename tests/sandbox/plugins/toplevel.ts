// An omnicore ABI v1 plugin in AssemblyScript whose top-level statements print to stdout
// (WASI fd_write) and log (omnicore:log): asc runs top-level statements in the module's start
// function (or, with --exportStart _initialize, in an exported _initialize).
@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: i32, iovs: usize, iovsLen: i32, nwritten: usize): i32;

@external("omnicore:log", "write")
declare function log_write(level: i32, ptr: usize, len: i32): void;

function print(fd: i32, text: string): void {
  const bytes = String.UTF8.encode(text + "\n");
  const iov = new StaticArray<u32>(3);  // (ptr, len), then nwritten
  unchecked(iov[0] = <u32>changetype<usize>(bytes));
  unchecked(iov[1] = <u32>bytes.byteLength);
  fd_write(fd, changetype<usize>(iov), 1, changetype<usize>(iov) + 8);
}

// `--use abort=toplevel/abort`: a failed assertion says why on stderr, then traps.
function abort(message: string | null, file: string | null, line: u32, column: u32): void {
  print(2, "abort: " + (message === null ? "" : message));
  unreachable();
}

const greeting = "hello from the top level";
print(1, greeting);
const said = String.UTF8.encode("logged from the top level");
log_write(2, changetype<usize>(said), said.byteLength);

export function omni_alloc(len: i32): usize {
  return heap.alloc(<usize>len);
}

export function omni_free(ptr: usize, len: i32): void {
  if (ptr) heap.free(ptr);
}

export function hello(ptr: usize, len: i32): i64 {
  const out = String.UTF8.encode(greeting);
  return (i64(changetype<usize>(out)) << 32) | i64(out.byteLength);
}
