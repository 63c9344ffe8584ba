package deploy

import (
	"encoding/xml"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The units carry what issue 14 asks of them; systemd-analyze's verdicts are deploy/check.sh's (CI).
func TestUnits(t *testing.T) {
	common := []string{"Type=notify\n", "WatchdogSec=", "User=hearth\n", "Group=hearth\n", "After=network-online.target",
		"Wants=network-online.target\n", "ProtectSystem=strict\n", "NoNewPrivileges=yes\n", "StateDirectory=hearth\n",
		"ExecStart=/usr/bin/hearth ", "EnvironmentFile=-/etc/hearth/"}
	for role, extra := range map[string][]string{
		"relay": {"CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "AmbientCapabilities=CAP_NET_BIND_SERVICE\n", "ExecReload="},
		"agent": {"CapabilityBoundingSet=\n", "PrivateUsers=yes\n"},
	} {
		unit, err := Unit(role)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range append(common, extra...) {
			if !strings.Contains(string(unit), want) {
				t.Errorf("hearth-%s.service lacks %q", role, want)
			}
		}
		if strings.Contains(string(unit), "DynamicUser") {
			t.Errorf("hearth-%s.service uses DynamicUser", role)
		}
	}
	if _, err := Unit("nas"); err == nil || err.Error() != `deploy: no unit for role "nas": use agent or relay` {
		t.Errorf("Unit(nas): %v", err)
	}
}

func TestLaunchdPlist(t *testing.T) {
	data, err := os.ReadFile("launchd/dev.hearth.agent.plist")
	if err != nil {
		t.Fatal(err)
	}
	var plist struct {
		Dict struct {
			Inner []byte `xml:",innerxml"`
		} `xml:"dict"`
	}
	if err := xml.Unmarshal(data, &plist); err != nil {
		t.Fatalf("the plist is not well-formed XML: %v", err)
	}
	for _, want := range []string{"<string>dev.hearth.agent</string>", "<string>/usr/local/bin/hearth</string>", "<string>agent</string>",
		"<key>RunAtLoad</key>", "<key>KeepAlive</key>"} {
		if !strings.Contains(string(plist.Dict.Inner), want) {
			t.Errorf("plist lacks %s", want)
		}
	}
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, want := range []string{"CGO_ENABLED=0 go build", "\nFROM scratch\n", "\nUSER 10001:10001\n", `HEALTHCHECK`, `CMD ["/hearth", "health"]`,
		"ca-certificates.crt"} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

func TestComposeFiles(t *testing.T) {
	for file, services := range map[string][]string{"docker/compose.relay.yaml": {"relay"}, "docker/compose.home.yaml": {"agent", "ollama"}} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Services map[string]struct {
				Command     []string       `yaml:"command"`
				EnvFile     string         `yaml:"env_file"`
				Healthcheck map[string]any `yaml:"healthcheck"`
				CapDrop     []string       `yaml:"cap_drop"`
				StopGrace   string         `yaml:"stop_grace_period"`
			} `yaml:"services"`
		}
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, name := range services {
			svc, ok := doc.Services[name]
			if !ok {
				t.Errorf("%s has no service %s", file, name)
				continue
			}
			if name == "ollama" {
				continue
			}
			if svc.Command[0] != name || !strings.HasSuffix(svc.EnvFile, name+".env") || len(svc.CapDrop) != 1 || svc.CapDrop[0] != "ALL" {
				t.Errorf("%s %s: command %v env_file %q cap_drop %v", file, name, svc.Command, svc.EnvFile, svc.CapDrop)
			}
			// Docker kills after 10 s by default, before the 15 s answers in flight get.
			if grace, err := time.ParseDuration(svc.StopGrace); err != nil || grace < 20*time.Second {
				t.Errorf("%s %s: stop_grace_period %q, want at least 20s (answers in flight get 15 s)", file, name, svc.StopGrace)
			}
			// The image's HEALTHCHECK (`hearth health`) asks the agent on :11500; the relay
			// has none there and asks its HTTPS, by its domain, on this container's :443.
			test := fmt.Sprint(svc.Healthcheck["test"])
			switch name {
			case "relay":
				if !strings.Contains(test, "/hearth health --url https://${HEARTH_DOMAIN") || !strings.Contains(test, "--connect 127.0.0.1:443") {
					t.Errorf("%s: the relay's healthcheck %s does not ask its HTTPS on 127.0.0.1:443", file, test)
				}
			case "agent":
				if svc.Healthcheck != nil {
					t.Errorf("%s: the agent overrides the image's healthcheck: %v", file, svc.Healthcheck)
				}
			}
		}
	}
}
