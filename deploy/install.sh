#!/bin/sh
# install.sh — install hearth and its service files for this machine's OS and architecture.
#
#   sudo sh install.sh                 # the binary beside this script (a release's dist/) or ../dist/
#   sudo sh install.sh --bin ./hearth  # a binary of your own
#   DESTDIR=/tmp/root sh install.sh    # into another root (packaging, tests): no user, no systemctl
#
# Linux: /usr/local/bin/hearth, /etc/systemd/system/hearth-{agent,relay}.service, /etc/hearth,
# the system user "hearth". macOS: /usr/local/bin/hearth and /Library/LaunchAgents/dev.hearth.agent.plist.
# Then: hearth init relay (VPS) or hearth init agent (home); see the README.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
bin=""

while [ $# -gt 0 ]; do
	case "$1" in
	--bin) bin=$2; shift 2 ;;
	--prefix) PREFIX=$2; shift 2 ;;
	-h | --help) sed -n '2,11p' "$0"; exit 0 ;;
	*) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

os=$(uname -s | tr '[:upper:]' '[:lower:]')
case "$(uname -m)" in
x86_64 | amd64) arch=amd64 ;;
aarch64 | arm64) arch=arm64 ;;
armv7l | armv7 | armhf) arch=armv7 ;;
*) echo "install.sh: no hearth build for $(uname -m); build one with: go build ./cmd/hearth" >&2; exit 1 ;;
esac
case "$os" in
linux | darwin) ;;
*) echo "install.sh: $os is not supported (linux or darwin)" >&2; exit 1 ;;
esac

if [ -z "$bin" ]; then
	for c in "$here/hearth-$os-$arch" "$here/../dist/hearth-$os-$arch"; do
		if [ -f "$c" ]; then bin=$c; break; fi
	done
fi
if [ -z "$bin" ] || [ ! -f "$bin" ]; then
	echo "install.sh: no binary hearth-$os-$arch beside this script or in ../dist: run make dist, or pass --bin FILE" >&2
	exit 1
fi

bindir="$PREFIX/bin"
mkdir -p "$DESTDIR$bindir"
cp "$bin" "$DESTDIR$bindir/hearth.new"
chmod 0755 "$DESTDIR$bindir/hearth.new"
mv -f "$DESTDIR$bindir/hearth.new" "$DESTDIR$bindir/hearth"
echo "installed $DESTDIR$bindir/hearth"

if [ "$os" = darwin ]; then
	agents="$DESTDIR/Library/LaunchAgents"
	mkdir -p "$agents" "$DESTDIR$PREFIX/etc/hearth" "$DESTDIR$PREFIX/var/log"
	sed "s|/usr/local/|$PREFIX/|g" "$here/launchd/dev.hearth.agent.plist" >"$agents/dev.hearth.agent.plist"
	chmod 0644 "$agents/dev.hearth.agent.plist"
	echo "installed $agents/dev.hearth.agent.plist"
	echo "next: hearth init agent --dir $PREFIX/etc/hearth ...; then launchctl bootstrap gui/\$(id -u) /Library/LaunchAgents/dev.hearth.agent.plist"
	exit 0
fi

units="$DESTDIR/etc/systemd/system"
mkdir -p "$units" "$DESTDIR/etc/hearth"
chmod 0755 "$DESTDIR/etc/hearth"
for role in agent relay; do
	sed "s|^ExecStart=/usr/bin/hearth |ExecStart=$bindir/hearth |" "$here/systemd/hearth-$role.service" >"$units/hearth-$role.service"
	chmod 0644 "$units/hearth-$role.service"
	echo "installed $units/hearth-$role.service"
done

if [ -n "$DESTDIR" ]; then
	echo "DESTDIR set: not creating the hearth user nor reloading systemd"
	exit 0
fi
if ! id hearth >/dev/null 2>&1; then
	useradd --system --user-group --home-dir /var/lib/hearth --no-create-home --shell /usr/sbin/nologin --comment hearth hearth
	echo "created the system user hearth"
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
fi
echo "next: hearth init relay --domain DOMAIN --email EMAIL   (VPS)   or the printed hearth init agent line (home)"
