#!/bin/sh
# After the .deb/.rpm installs: the fixed system user the units run as (not DynamicUser, whose
# random UIDs break file ownership on NFS), /etc/hearth, and systemd's view of the new units.
set -e
if ! getent passwd hearth >/dev/null 2>&1; then
	useradd --system --user-group --home-dir /var/lib/hearth --no-create-home --shell /usr/sbin/nologin --comment hearth hearth
fi
mkdir -p /etc/hearth
chmod 0755 /etc/hearth
# HEARTH_SYSTEMD_RUN (default /run/systemd/system) tells whether systemd runs; tests point it elsewhere.
if [ -d "${HEARTH_SYSTEMD_RUN:-/run/systemd/system}" ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	# An upgrade: the services that run restart on the new binary (a first install starts none).
	systemctl try-restart hearth-agent.service hearth-relay.service >/dev/null 2>&1 || true
fi
echo "hearth installed. VPS: hearth init relay --domain DOMAIN --email EMAIL; home: the hearth init agent line it prints."
