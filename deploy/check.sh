#!/bin/sh
# check.sh — what CI checks in deploy/: install.sh passes shellcheck and installs into a
# temporary root (DESTDIR) what it should; the installed units pass `systemd-analyze verify`
# and score at most 2.0 on `systemd-analyze security --offline=yes`.
# When dist/ holds .deb packages (make dist), their contents and scripts are checked too.
#   sh deploy/check.sh [HEARTH-BINARY]     (default: builds one with go build)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "deploy/check.sh: $*" >&2; exit 1; }

bin=${1:-}
if [ -z "$bin" ]; then
	bin="$tmp/hearth"
	(cd "$here/.." && CGO_ENABLED=0 go build -o "$bin" ./cmd/hearth)
fi

shellcheck "$here/install.sh" "$here/check.sh" "$here/dist.sh" "$here/packaging/postinstall.sh" "$here/packaging/preremove.sh"
echo "shellcheck: ok"

root="$tmp/root"
DESTDIR="$root" sh "$here/install.sh" --bin "$bin" >"$tmp/install.log"
for f in usr/local/bin/hearth etc/systemd/system/hearth-agent.service etc/systemd/system/hearth-relay.service; do
	[ -f "$root/$f" ] || fail "install.sh did not install /$f"
done
[ -x "$root/usr/local/bin/hearth" ] || fail "the installed hearth is not executable"
[ -d "$root/etc/hearth" ] || fail "install.sh did not make /etc/hearth"
"$root/usr/local/bin/hearth" version | grep -q '^hearth ' || fail "the installed hearth does not run"
for role in agent relay; do
	grep -q "^ExecStart=/usr/local/bin/hearth $role --config /etc/hearth/$role.yaml$" "$root/etc/systemd/system/hearth-$role.service" ||
		fail "hearth-$role.service: ExecStart does not run /usr/local/bin/hearth"
done
echo "install.sh into $root: ok"

for role in agent relay; do
	unit="$root/etc/systemd/system/hearth-$role.service"
	# verify wants the ExecStart binary to exist on this machine: point a copy at the installed one.
	mkdir -p "$tmp/verify"
	sed "s|^ExecStart=/usr/local/bin/hearth |ExecStart=$root/usr/local/bin/hearth |; s|^ExecReload=/bin/kill |ExecReload=$(command -v kill) |" \
		"$unit" >"$tmp/verify/hearth-$role.service"
	# verify exits 0 on unknown keys: any message at all is a failure here.
	if ! systemd-analyze verify "$tmp/verify/hearth-$role.service" >"$tmp/verify.log" 2>&1 || [ -s "$tmp/verify.log" ]; then
		cat "$tmp/verify.log" >&2
		fail "hearth-$role.service does not verify cleanly"
	fi
	score=$(systemd-analyze security --offline=yes "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
	systemd-analyze security --offline=yes --threshold=20 "$unit" >/dev/null ||
		fail "hearth-$role.service scores $score on systemd-analyze security, above 2.0"
	echo "hearth-$role.service: verify ok, security exposure $score (at most 2.0)"
done

for deb in "$here"/../dist/hearth_*.deb; do
	[ -f "$deb" ] || continue
	dpkg-deb -c "$deb" >"$tmp/deb.list"
	for f in ./usr/bin/hearth ./usr/lib/systemd/system/hearth-agent.service ./usr/lib/systemd/system/hearth-relay.service; do
		grep -q " $f\$" "$tmp/deb.list" || fail "$(basename "$deb") lacks $f"
	done
	mkdir -p "$tmp/control"
	dpkg-deb -e "$deb" "$tmp/control"
	grep -q "useradd --system" "$tmp/control/postinst" || fail "$(basename "$deb") does not create the hearth user"
	echo "$(basename "$deb"): binary, units and the hearth user: ok"
done

if [ -f "$here/../dist/SHA256SUMS" ]; then
	(cd "$here/../dist" && sha256sum --quiet -c SHA256SUMS) || fail "dist/SHA256SUMS does not match dist/"
	echo "dist/SHA256SUMS: ok"
fi
