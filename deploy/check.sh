#!/bin/sh
# check.sh — what CI checks in deploy/: install.sh passes shellcheck and installs into a
# temporary root (DESTDIR) what it should; the installed units pass `systemd-analyze verify`
# and score at most 2.0 on `systemd-analyze security --offline=yes`.
# When dist/ holds make dist's output, the .deb and .rpm packages' contents and scripts are
# checked too, and that the Linux binaries are static.
# Every failure says which check failed and shows the output that tells why.
#   sh deploy/check.sh [HEARTH-BINARY]     (default: builds one with go build)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
step="starting"
# A command that fails under set -e ends the script here: name the check it was part of.
on_exit() {
	rc=$?
	if [ "$rc" != 0 ]; then echo "deploy/check.sh: FAILED (exit $rc) while: $step" >&2; fi
	rm -rf "$tmp"
}
trap on_exit EXIT
fail() { echo "deploy/check.sh: $*" >&2; exit 1; }
# show FILE: the output of the command that failed, on stderr.
show() { if [ -s "$1" ]; then echo "--- output:" >&2; cat "$1" >&2; echo "---" >&2; fi; }

head=$(git -C "$here/.." rev-parse --short=12 HEAD 2>/dev/null || true)
bin=${1:-}
if [ -z "$bin" ]; then
	step="building hearth (go build ./cmd/hearth)"
	bin="$tmp/hearth"
	(cd "$here/.." && CGO_ENABLED=0 go build -trimpath -ldflags "-X main.commit=$head" -o "$bin" ./cmd/hearth)
fi
[ -f "$bin" ] || fail "no hearth binary at $bin: run make dist (dist/hearth-linux-amd64) or pass a binary"

step="shellcheck of the shell scripts"
if ! shellcheck "$here/install.sh" "$here/check.sh" "$here/dist.sh" "$here/packaging/postinstall.sh" "$here/packaging/preremove.sh" >"$tmp/out" 2>&1; then
	show "$tmp/out"
	fail "shellcheck found problems in deploy/'s scripts (above)"
fi
echo "shellcheck: ok"

step="install.sh into a temporary root, and the installed hearth's version"
root="$tmp/root"
if ! DESTDIR="$root" sh "$here/install.sh" --bin "$bin" >"$tmp/out" 2>&1; then
	show "$tmp/out"
	fail "DESTDIR=$root sh install.sh --bin $bin failed"
fi
for f in usr/local/bin/hearth etc/systemd/system/hearth-agent.service etc/systemd/system/hearth-relay.service; do
	[ -f "$root/$f" ] || { show "$tmp/out"; fail "install.sh did not install /$f"; }
done
[ -x "$root/usr/local/bin/hearth" ] || fail "the installed hearth is not executable"
[ -d "$root/etc/hearth" ] || fail "install.sh did not make /etc/hearth"
if ! "$root/usr/local/bin/hearth" version >"$tmp/out" 2>&1 || ! grep -q '^hearth ' "$tmp/out"; then
	show "$tmp/out"
	fail "the installed hearth does not run: \`hearth version\` should print \"hearth VERSION ...\""
fi
# `hearth version` names the commit it was built from (make and dist.sh pass it as main.commit).
if [ -n "$head" ] && ! grep -q "(commit $head," "$tmp/out"; then
	show "$tmp/out"
	fail "\`hearth version\` does not name the commit $head it was built from"
fi
for role in agent relay; do
	grep -q "^ExecStart=/usr/local/bin/hearth $role --config /etc/hearth/$role.yaml$" "$root/etc/systemd/system/hearth-$role.service" || {
		grep '^ExecStart=' "$root/etc/systemd/system/hearth-$role.service" >&2 || true
		fail "hearth-$role.service: ExecStart does not run /usr/local/bin/hearth $role --config /etc/hearth/$role.yaml"
	}
done
echo "install.sh into $root: ok"

for role in agent relay; do
	unit="$root/etc/systemd/system/hearth-$role.service"
	step="systemd-analyze verify hearth-$role.service"
	# verify wants the ExecStart binary to exist on this machine: point a copy at the installed one.
	mkdir -p "$tmp/verify"
	sed "s|^ExecStart=/usr/local/bin/hearth |ExecStart=$root/usr/local/bin/hearth |; s|^ExecReload=/bin/kill |ExecReload=$(command -v kill) |" \
		"$unit" >"$tmp/verify/hearth-$role.service"
	# verify exits 0 on unknown keys: any message at all is a failure here.
	if ! systemd-analyze verify "$tmp/verify/hearth-$role.service" >"$tmp/out" 2>&1 || [ -s "$tmp/out" ]; then
		show "$tmp/out"
		fail "hearth-$role.service does not verify cleanly"
	fi
	step="systemd-analyze security --offline=yes hearth-$role.service"
	# --threshold is in tenths of the printed 0.0-10.0 exposure: 20 is 2.0.
	if ! systemd-analyze security --offline=yes --threshold=20 "$unit" >"$tmp/out" 2>&1; then
		show "$tmp/out"
		score=$(sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p' "$tmp/out")
		fail "hearth-$role.service scores ${score:-no score} on systemd-analyze security, above 2.0 (the ✗ lines above cost it)"
	fi
	score=$(sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p' "$tmp/out")
	[ -n "$score" ] || { show "$tmp/out"; fail "systemd-analyze security printed no exposure level for hearth-$role.service"; }
	echo "hearth-$role.service: verify ok, security exposure $score (at most 2.0)"
done

for deb in "$here"/../dist/hearth_*.deb; do
	[ -f "$deb" ] || continue
	name=$(basename "$deb")
	step="the contents of $name"
	dpkg-deb -c "$deb" >"$tmp/deb.list"
	for f in ./usr/bin/hearth ./usr/lib/systemd/system/hearth-agent.service ./usr/lib/systemd/system/hearth-relay.service; do
		grep -q " $f\$" "$tmp/deb.list" || { show "$tmp/deb.list"; fail "$name lacks $f"; }
	done
	mkdir -p "$tmp/control"
	dpkg-deb -e "$deb" "$tmp/control"
	grep -q "useradd --system" "$tmp/control/postinst" || { show "$tmp/control/postinst"; fail "$name does not create the hearth user"; }
	echo "$name: binary, units and the hearth user: ok"
	# HEARTH_CHECK_INSTALL=1 (CI, as root): install the package for real, as a person would,
	# then remove it. It changes this machine (the hearth user, /usr/bin/hearth), so not by default.
	if [ "${HEARTH_CHECK_INSTALL:-}" = 1 ] && [ "$(id -u)" != 0 ]; then
		fail "HEARTH_CHECK_INSTALL=1 installs $name for real: run check.sh as root"
	fi
	if [ "${HEARTH_CHECK_INSTALL:-}" = 1 ]; then
		step="dpkg -i $name"
		dpkg -i "$deb" >"$tmp/out" 2>&1 || { show "$tmp/out"; fail "$name does not install (dpkg -i, above)"; }
		step="the installed $name"
		getent passwd hearth >/dev/null || fail "$name installed but made no hearth user"
		[ -d /etc/hearth ] || fail "$name installed but made no /etc/hearth"
		/usr/bin/hearth version >"$tmp/out" 2>&1 || { show "$tmp/out"; fail "the installed /usr/bin/hearth does not run"; }
		[ -z "$head" ] || grep -q "$head" "$tmp/out" || { show "$tmp/out"; fail "the installed hearth does not name the commit $head"; }
		for role in agent relay; do
			systemd-analyze verify "/usr/lib/systemd/system/hearth-$role.service" >"$tmp/out" 2>&1 || { show "$tmp/out"; fail "the installed hearth-$role.service does not verify"; }
		done
		step="dpkg -r hearth"
		dpkg -r hearth >"$tmp/out" 2>&1 || { show "$tmp/out"; fail "$name does not remove (dpkg -r, above)"; }
		[ ! -e /usr/bin/hearth ] || fail "dpkg -r hearth left /usr/bin/hearth"
		echo "$name: installs (user, /etc/hearth, units that verify, hearth version) and removes: ok"
	fi
done

# The .rpms (no rpm tools needed: the test reads their headers) and that the Linux binaries
# are static (no dynamic loader), in Go: TestDist in deploy/dist_test.go.
if ls "$here"/../dist/hearth-linux-* >/dev/null 2>&1; then
	step="the static binaries and the .rpms in dist/ (TestDist)"
	dist=$(cd "$here/../dist" && pwd)
	if ! (cd "$here" && HEARTH_DIST="$dist" go test -count=1 -run '^TestDist$' -v .) >"$tmp/out" 2>&1; then
		show "$tmp/out"
		fail "dist/ has a binary that is not static or an .rpm that lacks what it should (above)"
	fi
	sed -n 's/.*dist_test.go:[0-9]*: //p' "$tmp/out"
	echo "dist/: static binaries, and the .rpms' binary, units and scripts: ok"
fi

if [ -f "$here/../dist/SHA256SUMS" ]; then
	step="sha256sum -c dist/SHA256SUMS"
	(cd "$here/../dist" && sha256sum --quiet -c SHA256SUMS) >"$tmp/out" 2>&1 || { show "$tmp/out"; fail "dist/SHA256SUMS does not match dist/"; }
	echo "dist/SHA256SUMS: ok"
fi
step="done"
