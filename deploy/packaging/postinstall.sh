#!/bin/sh
# After the .deb/.rpm installs: the fixed system user the units run as (not DynamicUser, whose
# random UIDs break file ownership on NFS), /etc/hearth, and systemd's view of the new units.
set -e
if ! getent passwd hearth >/dev/null 2>&1; then
	useradd --system --user-group --home-dir /var/lib/hearth --no-create-home --shell /usr/sbin/nologin --comment hearth hearth
fi
mkdir -p /etc/hearth
chmod 0755 /etc/hearth
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
echo "hearth installed. VPS: hearth init relay --domain DOMAIN --email EMAIL; home: the hearth init agent line it prints."
