#!/bin/sh
# Before the .deb/.rpm removes hearth: stop its services (configs and state stay).
set -e
if [ -d /run/systemd/system ]; then
	for unit in hearth-agent.service hearth-relay.service; do
		systemctl disable --now "$unit" >/dev/null 2>&1 || true
	done
fi
