package setup_test

import (
	"errors"
	"os"
	"os/user"
	"strings"
	"testing"

	"github.com/hearthlab/hearth/internal/setup"
)

// Who `hearth init` gives the secrets file to: on Linux the units' fixed user hearth; on a
// Mac, where there is none and the launchd agent runs as the user who runs Ollama, the user
// who ran sudo (before, the file stayed root's 0600 and that agent could not read it).
func TestServiceOwner(t *testing.T) {
	users := map[string]*user.User{
		"hearth": {Username: "hearth", Uid: "998", Gid: "998"},
		"alice":  {Username: "alice", Uid: "501", Gid: "20", HomeDir: "/Users/alice"},
	}
	lookup := func(name string) (*user.User, error) {
		if u, ok := users[name]; ok {
			return u, nil
		}
		return nil, user.UnknownUserError(name)
	}
	noHearth := func(name string) (*user.User, error) {
		if name == "hearth" {
			return nil, user.UnknownUserError(name)
		}
		return lookup(name)
	}
	for _, tt := range []struct {
		name, goos string
		euid       int
		sudoUser   string
		lookup     func(string) (*user.User, error)
		want, err  string
	}{
		{"linux root", "linux", 0, "alice", lookup, "hearth", ""},
		{"linux before the user exists", "linux", 0, "alice", noHearth, "", ""},
		{"linux not root", "linux", 1000, "", lookup, "", ""},
		{"mac under sudo", "darwin", 0, "alice", noHearth, "alice", ""},
		{"mac as root itself", "darwin", 0, "", lookup, "", ""},
		{"mac as the user", "darwin", 501, "", lookup, "", ""},
		{"mac, sudo user gone", "darwin", 0, "bob", lookup, "", `$SUDO_USER bob, who the agent runs as on a Mac: user: unknown user bob`},
	} {
		getenv := func(k string) string {
			if k == "SUDO_USER" {
				return tt.sudoUser
			}
			return ""
		}
		u, err := setup.ServiceOwner(tt.goos, tt.euid, getenv, tt.lookup)
		got := ""
		if u != nil {
			got = u.Username
		}
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && err.Error() != tt.err) {
			t.Errorf("%s: %q, %v; want %q, %q", tt.name, got, err, tt.want, tt.err)
		}
	}
}

// A chown that fails names the file and stops init before anything is renamed into place.
func TestChownFailureStopsInit(t *testing.T) {
	dir := t.TempDir()
	env := testEnv(&chownLog{})
	env.Chown = func(string) error { return errors.New("user alice: operation not permitted") }
	_, _, err := setup.WriteAgent(t.Context(), setup.Agent{Name: "mac", Dir: dir, OllamaURL: "http://127.0.0.1:1"}, env)
	if err == nil || !strings.Contains(err.Error(), "agent.env to the user the service runs as: user alice: operation not permitted") {
		t.Errorf("init with a failing chown: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a failed init left %d files behind", len(entries))
	}
}
