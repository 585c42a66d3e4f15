#!/bin/bash
# SPDX-License-Identifier: MIT
# The installed library as a program outside this tree sees it:
#   - `meson install --destdir` into a temporary directory;
#   - every include/vhu/*.h is installed and compiles alone (C99) against
#     the installed headers only;
#   - the exported symbols of libvhu.so (nm -D) are exactly the names
#     src/libvhu.map lists, all vhu_* (never vhu__*), each with a version;
#   - nothing lands outside the prefix (systemd units and sysusers.d
#     entry included);
#   - examples/ramdisk.c, probe.c and rng.c, built out of tree with
#     `pkg-config --cflags --libs vhu`, link the installed libvhu.so.0
#     with versioned symbols, and run: probe reads ramdisk's config space.
# Usage: test-install.sh BUILD_DIR    (TAP on stdout)
set -u
BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
CC=${CC:-cc}

n=0 fails=0
ok()    { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); echo "not ok $n - $1"; fails=$((fails + 1)); [ -n "${2:-}" ] && sed 's/^/#   /' <<<"$2"; }
check() { # check NAME DIAG COMMAND...
	local name=$1 diag=$2; shift 2
	if "$@"; then ok "$name"; else notok "$name" "$diag"; fi
}
finish() { echo "1..$n"; [ "$fails" -eq 0 ]; exit $?; }

tmp=$(mktemp -d /tmp/vhu-e2e-install.XXXXXX)
rd_pid=''
cleanup() {
	if [ -n "$rd_pid" ]; then
		kill "$rd_pid" 2>/dev/null
		wait "$rd_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# --- install ------------------------------------------------------------------
dest=$tmp/dest
if ! out=$(meson install -C "$BUILD" --no-rebuild --destdir "$dest" 2>&1); then
	notok "meson install --destdir" "$(tail -n 20 <<<"$out")"
	finish
fi
ok "meson install --destdir"
prefix=$(meson introspect "$BUILD" --buildoptions |
	/usr/bin/python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"][0])')
outside=$(cd "$dest" && find . -type f -o -type l | sed 's|^\.||' | grep -v "^$prefix/")
check "nothing is installed outside the prefix ($prefix)" "$outside" [ -z "$outside" ]
pc=$(find "$dest" -name vhu.pc | head -n 1)
lib=$(find "$dest" -name 'libvhu.so.0' | head -n 1)
inc=$(find "$dest" -type d -path '*/include/vhu' | head -n 1)
check "vhu.pc, libvhu.so.0 and include/vhu are installed" "pc '$pc' lib '$lib' inc '$inc'" \
	[ -n "$pc" ] && [ -n "$lib" ] && [ -n "$inc" ]
[ -n "$pc" ] && [ -n "$lib" ] && [ -n "$inc" ] || finish
libdir=$(dirname "$lib")

# --- headers --------------------------------------------------------------------
want=$(cd "$SRC/include/vhu" && ls ./*.h | sed 's|^\./||' | sort)
have=$(cd "$inc" && ls ./*.h | sed 's|^\./||' | sort)
check "every include/vhu/*.h is installed" "source: $want; installed: $have" [ "$want" = "$have" ]
for h in $have; do
	printf '#include <vhu/%s>\n#include <vhu/%s>\nint vhu_header_alone(void);\n' "$h" "$h" >"$tmp/alone.c"
	out=$("$CC" -std=c99 -pedantic-errors -Wall -Wextra -Werror -fsyntax-only \
		-I"$(dirname "$inc")" "$tmp/alone.c" 2>&1)
	check "installed <vhu/$h> compiles alone (C99)" "$out" [ -z "$out" ]
done

# --- exported symbols against the version script ------------------------------
nm -D --defined-only "$lib" >"$tmp/nm" 2>&1
# Version node names appear as absolute symbols ("A VHU_0.1").
nodes=$(awk '$2 == "A" { print $3 }' "$tmp/nm" | sort)
exported=$(awk '$2 != "A" { print $3 }' "$tmp/nm" | sort)
names=$(sed 's/@.*//' <<<"$exported" | sort)
# Names listed in the map: "name;" lines inside a node, wildcards excluded.
listed=$(sed 's|/\*.*\*/||; s|^[[:space:]]*||' "$SRC/src/libvhu.map" |
	grep -E '^[A-Za-z_][A-Za-z0-9_]*;$' | tr -d ';' | sort)
map_nodes=$(grep -oE '^VHU_[0-9.]+' "$SRC/src/libvhu.map" | sort)
check "libvhu.so exports symbols" "$(head -n 5 "$tmp/nm")" [ -n "$names" ]
bad=$(grep -vE '^vhu_[a-z]' <<<"$names")
check "only vhu_* names are exported (none vhu__*)" "$bad" [ -z "$bad" ]
unversioned=$(grep -vE '@@?VHU_[0-9.]+$' <<<"$exported")
check "every exported symbol has a VHU_ version" "$unversioned" [ -z "$unversioned" ]
extra=$(comm -23 <(echo "$names") <(echo "$listed"))
check "every exported symbol is listed in src/libvhu.map" \
	"exported but not listed (add them to the next release's node): $extra" [ -z "$extra" ]
missing=$(comm -13 <(echo "$names") <(echo "$listed"))
check "every name src/libvhu.map lists is exported" "listed but not exported: $missing" [ -z "$missing" ]
check "the library's version nodes are the map's" "library: $nodes; map: $map_nodes" \
	[ "$nodes" = "$map_nodes" ]
# Every public function declared in the headers is exported.
declared=$(cat "$SRC"/include/vhu/*.h | grep -oE '\bvhu_[a-z0-9_]+[[:space:]]*\(' |
	tr -d ' (' | sort -u)
undeclared=$(comm -23 <(echo "$declared") <(echo "$names") | grep -v '^vhu_log_fn$\|^vhu_loop_cb$\|^vhu_fe_config_change_fn$')
check "every function the headers declare is exported" "declared, not exported: $undeclared" [ -z "$undeclared" ]

# --- a program built out of tree with pkg-config ------------------------------
export PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_SYSROOT_DIR=$dest
flags=$(pkg-config --cflags --libs vhu 2>&1)
check "pkg-config --cflags --libs vhu" "$flags" pkg-config --exists vhu
for ex in ramdisk probe rng; do
	# shellcheck disable=SC2086 # flags are words
	out=$("$CC" -std=gnu11 -Wall -Wextra -Werror -o "$tmp/$ex" "$SRC/examples/$ex.c" $flags 2>&1)
	check "examples/$ex.c builds out of tree with pkg-config" "$flags"$'\n'"$out" [ -x "$tmp/$ex" ]
done
[ -x "$tmp/ramdisk" ] && [ -x "$tmp/probe" ] || finish
export LD_LIBRARY_PATH=$libdir
resolved=$(ldd "$tmp/probe" | awk '/libvhu\.so/ { print $3 }')
check "the program loads the installed libvhu.so.0" "ldd: $resolved" \
	[ "$(readlink -f "$resolved")" = "$(readlink -f "$lib")" ]
objdump -T "$tmp/probe" | grep -E '[[:space:]]vhu_[a-z0-9_]+$' >"$tmp/undef"
unbound=$(grep -vE '\(VHU_[0-9.]+\)[[:space:]]+vhu_' "$tmp/undef")
check "the program binds every vhu_ symbol with a VHU_ version" "$unbound" \
	[ -s "$tmp/undef" ] && [ -z "$unbound" ]
"$tmp/ramdisk" "$tmp/rd.sock" 8 >"$tmp/rd.log" 2>&1 &
rd_pid=$!
for _ in $(seq 100); do [ -S "$tmp/rd.sock" ] && break; sleep 0.05; done
out=$(timeout 20 "$tmp/probe" "$tmp/rd.sock" blk 2>&1)
rc=$?
check "out-of-tree probe reads out-of-tree ramdisk's config space" "exit $rc: $out" \
	grep -q '^as virtio-blk: capacity 16384 sectors' <<<"$out"
finish
