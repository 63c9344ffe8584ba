#!/bin/sh
# Before the .deb/.rpm removes hearth: stop and disable its services (configs and state stay).
# An upgrade runs this too (deb: "upgrade", rpm: 1): then the services are left as they are, and
# postinstall restarts the running ones on the new binary.
# HEARTH_SYSTEMD_RUN (default /run/systemd/system) tells whether systemd runs; tests point it elsewhere.
set -e
case "${1:-remove}" in
remove | purge | 0) ;;
*) exit 0 ;;
esac
if [ -d "${HEARTH_SYSTEMD_RUN:-/run/systemd/system}" ]; then
	for unit in hearth-agent.service hearth-relay.service; do
		systemctl disable --now "$unit" >/dev/null 2>&1 || true
	done
fi
