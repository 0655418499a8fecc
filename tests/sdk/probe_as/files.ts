// The fs grant through the SDK's `fs` (tests/sdk/test_assemblyscript.py grants /in read-only
// and /out read-write; plugin.test.ts runs it with no directory granted).
import { fs, input, lastError, lastStatus, ok } from "omnicore";

function show(value: string | null): string {
  return value != null ? "ok(" + value + ")" : "err(" + lastStatus.toString() + ") " + lastError;
}

function names(list: string[] | null): string {
  return list != null ? "ok(" + list.join(",") + ")" : "err(" + lastStatus.toString() + ") " + lastError;
}

function flag(done: bool): string {
  return done ? "true" : "err(" + lastStatus.toString() + ") " + lastError;
}

// Input: "READ_DIR WRITE_DIR". Output: one `name=result` line per fs call.
export function files(ptr: usize, len: usize): u64 {
  const args = input(ptr, len).split(" ");
  const src = args[0], dst = args[1];
  const lines: string[] = [];
  lines.push("dirs=" + fs.dirs().join(","));
  lines.push("read=" + show(fs.readText(src + "/a.txt")));
  lines.push("read.small=" + show(fs.readText(src + "/a.txt", 3)));
  lines.push("read.missing=" + show(fs.readText(src + "/nope.txt")));
  lines.push("read.escape=" + show(fs.readText(src + "/../secret.txt")));
  lines.push("read.ungranted=" + show(fs.readText("/etc/passwd")));
  lines.push("read.relative=" + show(fs.readText("a.txt")));
  lines.push("write.readonly=" + flag(fs.writeText(src + "/c.txt", "x")));
  lines.push("write=" + flag(fs.writeText(dst + "/b.txt", "written")));
  const bytes = new Uint8Array(3);
  bytes[0] = 0; bytes[1] = 255; bytes[2] = 7;
  lines.push("write.bytes=" + flag(fs.writeFile(dst + "/raw.bin", bytes)));
  const back = fs.readFile(dst + "/raw.bin");
  lines.push("read.bytes=" + (back != null ? back.join(",") : "err(" + lastStatus.toString() + ") " + lastError));
  lines.push("mkdir=" + flag(fs.mkdir(dst + "/sub")));
  lines.push("list=" + names(fs.listDir(dst)));
  const info = fs.stat(dst + "/b.txt");
  lines.push("stat=" + (info != null ? info.size.toString() + " " + info.isFile.toString() + " " + info.isDir.toString() : "err(" + lastStatus.toString() + ") " + lastError));
  lines.push("exists=" + fs.exists(dst + "/b.txt").toString() + " " + fs.exists(dst + "/zz").toString());
  lines.push("remove=" + flag(fs.remove(dst + "/raw.bin")) + " " + flag(fs.remove(dst + "/sub")));
  lines.push("remove.readonly=" + flag(fs.remove(src + "/a.txt")));
  lines.push("list.after=" + names(fs.listDir(dst)));
  lines.push("list.file=" + names(fs.listDir(src + "/a.txt")));
  return ok(lines.join("\n") + "\n");
}
