#!/bin/sh
# Installs the build into a temporary DESTDIR and checks what lands there
# (header, shared and static library, jaccl.pc, tools, versioned symbols), then
# builds an out-of-tree C program (shared and static) and a C++ program with
# pkg-config against that tree and runs them at 2 ranks.
# Usage: test_install.sh BUILD_DIR JACCL_LAUNCH SOURCE_DIR VERSION; $CC, $CXX (optional),
# $EXTRA_FLAGS (sanitizer flags of the build), $PYTHON (optional) from the environment.
set -eu
build=$1 launch=$2 src=$3 version=$4
cxx=${CXX:-} flags=${EXTRA_FLAGS:-}
launch=$(cd "$(dirname "$launch")" && pwd)/$(basename "$launch") # we cd below
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
fail() { echo "FAIL: $*"; exit 1; }

meson install -C "$build" --destdir "$tmp/root" --no-rebuild >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "meson install"; }
pc=$(find "$tmp/root" -name jaccl.pc)
[ -n "$pc" ] || fail "no jaccl.pc installed"
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
export PKG_CONFIG_SYSROOT_DIR="$tmp/root"
prefix=$tmp/root$(env -u PKG_CONFIG_SYSROOT_DIR pkg-config --variable=prefix jaccl)
libdir=$tmp/root$(env -u PKG_CONFIG_SYSROOT_DIR pkg-config --variable=libdir jaccl)
for f in "$prefix/include/jaccl.h" "$libdir/libjaccl.so" "$libdir/libjaccl.so.0" \
         "$libdir/libjaccl.a" "$prefix/bin/jaccl-launch"; do
    [ -e "$f" ] || fail "not installed: ${f#"$tmp/root"}"
done
[ "$(pkg-config --modversion jaccl)" = "$version" ] || fail "jaccl.pc version is not $version"

# Exported: jaccl_* only, each in a JACCL_0.x version node; soname libjaccl.so.0.
objdump -p "$libdir/libjaccl.so" | grep -q 'SONAME *libjaccl\.so\.0$' || fail "soname"
objdump -T "$libdir/libjaccl.so" | awk '$2 == "g" && $0 !~ /\*UND\*/ { print $(NF-1), $NF }' \
    >"$tmp/syms"
grep -q '^JACCL_0\.[0-9]* jaccl_allreduce$' "$tmp/syms" || fail "jaccl_allreduce not versioned"
bad=$(grep -v -e '^JACCL_0\.[0-9]* jaccl_[a-z0-9_]*$' -e '^JACCL_0\.[0-9]* JACCL_0\.[0-9]*$' \
    "$tmp/syms" || true)
[ -z "$bad" ] || fail "exported symbols outside jaccl_*/JACCL_0.x: $bad"
echo "$(wc -l <"$tmp/syms") versioned symbols exported"

cd "$tmp"
# shellcheck disable=SC2086,SC2046 # flags and pkg-config output are word lists
${CC:-cc} $flags -o hello "$src/examples/allreduce_hello.c" $(pkg-config --cflags --libs jaccl) \
    -Wl,-rpath,"$libdir" || fail "C build with pkg-config"
# shellcheck disable=SC2086,SC2046
${CC:-cc} $flags -o hello_static "$src/examples/allreduce_hello.c" $(pkg-config --cflags jaccl) \
    $(pkg-config --static --libs jaccl | sed 's/-ljaccl\b/-l:libjaccl.a/') ||
    fail "static C build with pkg-config --static"
! objdump -p hello_static | grep -q 'NEEDED.*libjaccl' || fail "hello_static needs libjaccl.so"
for prog in ./hello ./hello_static; do
    out=$("$launch" -n 2 --timeout 30 -- "$prog") || fail "$prog at 2 ranks: $out"
    for r in 0 1; do
        echo "$out" | grep -qx "\[$r\] rank $r: 2 4 6 1" || fail "$prog rank $r: $out"
    done
done
echo "C program (shared and static) built with pkg-config: ok"

if [ -n "${PYTHON:-}" ]; then
    init=$(find "$tmp/root" -path '*/jaccl/__init__.py')
    [ -n "$init" ] || fail "python package not installed"
    [ -n "$(find "$tmp/root" -path '*/jaccl/_installed.py')" ] || fail "no jaccl/_installed.py"
    # Under the sanitizers, python needs their runtimes preloaded ($PYTHON_PRELOAD).
    out=$("$launch" -n 2 --timeout 30 --env PYTHONPATH="$(dirname "$(dirname "$init")")" \
        --env JACCL_LIBRARY="$libdir/libjaccl.so" --env LD_PRELOAD="${PYTHON_PRELOAD:-}" \
        --env ASAN_OPTIONS=detect_leaks=0 -- "$PYTHON" -c 'import jaccl
jaccl.init()
b = bytearray([jaccl.rank() + 1] * 3)
jaccl.allreduce(b, out=b)
print("python", jaccl.__file__.startswith("'"$tmp"'"), list(b))') || fail "installed python package: $out"
    [ "$(echo "$out" | grep -c 'python True \[3, 3, 3\]$')" = 2 ] || fail "python output: $out"
    echo "installed python package: ok"
fi

if [ -z "$cxx" ]; then
    echo "no C++ compiler: C++ part skipped"
    exit 0
fi
# shellcheck disable=SC2086,SC2046
$cxx -std=c++17 $flags -o ring -I"$src/examples" "$src/examples/cpp_ring.cpp" \
    $(pkg-config --cflags --libs jaccl) -Wl,-rpath,"$libdir" || fail "C++ build with pkg-config"
out=$("$launch" -n 2 --timeout 30 -- ./ring) || fail "C++ program at 2 ranks: $out"
[ "$(echo "$out" | grep -c ', ok$')" = 2 ] || fail "C++ program output: $out"
echo "C++ program built with pkg-config: ok"
