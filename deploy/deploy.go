// Package deploy holds the files that install hearth on a machine — systemd units, the
// launchd plist, the Dockerfile, compose files, install.sh and the package scripts — and
// embeds the systemd units, so that `hearth init --systemd` installs the very units the
// packages carry. Only cmd/hearth and internal/setup import it.
package deploy

import (
	"embed"
	"fmt"
)

//go:embed systemd/hearth-agent.service systemd/hearth-relay.service
var units embed.FS

// Unit is the systemd unit of role ("agent" or "relay"), as shipped in deploy/systemd.
func Unit(role string) ([]byte, error) {
	if role != "agent" && role != "relay" {
		return nil, fmt.Errorf("deploy: no unit for role %q: use agent or relay", role)
	}
	return units.ReadFile("systemd/hearth-" + role + ".service")
}
