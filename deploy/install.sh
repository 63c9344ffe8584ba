#!/bin/sh
# install.sh — install hearth and its service files for this machine's OS and architecture.
#
#   sudo sh install.sh                 # the binary beside this script (a release's dist/) or ../dist/
#   sudo sh install.sh --bin ./hearth  # a binary of your own
#   DESTDIR=/tmp/root sh install.sh    # into another root (packaging, tests): no user, no systemctl
#
# Linux: /usr/local/bin/hearth, /etc/systemd/system/hearth-{agent,relay}.service, /etc/hearth,
# the system user "hearth". macOS: /usr/local/bin/hearth, /Library/LaunchAgents/dev.hearth.agent.plist,
# and /usr/local/etc/hearth and /usr/local/var/log/hearth owned by the user who ran sudo.
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
	-h | --help) sed -n '2,12p' "$0"; exit 0 ;;
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
	# The launchd agent runs as the user who runs Ollama (there is no hearth user on a Mac):
	# the one who ran sudo, else the caller. Its config and log directories are that user's, so
	# that `hearth init agent` needs no sudo and the agent reads its agent.env and writes its log.
	owner=${SUDO_USER:-$(id -un)}
	agents="$DESTDIR/Library/LaunchAgents"
	conf="$DESTDIR$PREFIX/etc/hearth"
	logs="$DESTDIR$PREFIX/var/log/hearth"
	mkdir -p "$agents" "$conf" "$logs"
	if [ "$owner" = root ]; then
		echo "install.sh: $conf and $logs stay root's: run install.sh with sudo from the account that runs Ollama, which the agent runs as" >&2
	else
		chown "$owner" "$conf" "$logs"
		echo "gave $conf and $logs to $owner"
	fi
	sed "s|/usr/local/|$PREFIX/|g" "$here/launchd/dev.hearth.agent.plist" >"$agents/dev.hearth.agent.plist"
	chmod 0644 "$agents/dev.hearth.agent.plist"
	echo "installed $agents/dev.hearth.agent.plist"
	echo "next, as $owner (no sudo): hearth init agent ...; then launchctl bootstrap gui/\$(id -u) /Library/LaunchAgents/dev.hearth.agent.plist"
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
