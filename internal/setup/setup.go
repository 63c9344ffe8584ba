// Package setup writes a new machine's hearth config: `hearth init relay` and `hearth init
// agent` render short config files with fresh secrets kept in an env file beside them,
// validate what they wrote with internal/config's loaders, and can install the systemd unit.
// Only cmd/hearth imports it.
package setup

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/hearthlab/hearth/internal/config"
)

// ServiceUser is the fixed user the units run as (not DynamicUser: its random UIDs break the
// ownership of files on NFS).
const ServiceUser = "hearth"

// Env is what setup takes from the machine; tests replace each part.
type Env struct {
	// Random is the source of secrets. Default crypto/rand.
	Random io.Reader
	// Chown gives a written secrets file to the user the service runs as. Default: when
	// running as root, to ServiceOwner's user; otherwise the file stays the caller's.
	Chown func(path string) error
	// HTTP asks the local Ollama for its models. Default a client with a 3s timeout.
	HTTP *http.Client
	// Getenv reads OLLAMA_HOST. Default os.Getenv.
	Getenv func(string) string
	// GOOS is the machine's OS, for how the agent is started: "darwin" is launchd's.
	// Default runtime.GOOS.
	GOOS string
}

func (e Env) complete() Env {
	if e.Random == nil {
		e.Random = rand.Reader
	}
	if e.HTTP == nil {
		e.HTTP = &http.Client{Timeout: 3 * time.Second}
	}
	if e.Getenv == nil {
		e.Getenv = os.Getenv
	}
	if e.GOOS == "" {
		e.GOOS = runtime.GOOS
	}
	if e.Chown == nil {
		goos := e.GOOS
		e.Chown = func(path string) error { return chownToServiceUser(path, goos) }
	}
	return e
}

func chownToServiceUser(path, goos string) error {
	u, err := ServiceOwner(goos, os.Geteuid(), os.Getenv, user.Lookup)
	if err != nil || u == nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("user %s: %w", u.Username, err)
	}
	return nil
}

// ServiceOwner is the user that init, run with effective uid euid on goos, gives the secrets
// file to: nil when it stays the caller's. On Linux the units run as the fixed user hearth,
// when it exists (install.sh and the packages create it; until then root keeps the file). On
// a Mac there is no such user: the launchd agent runs in the session of the user who runs
// Ollama, so under sudo the file goes to $SUDO_USER, who would otherwise be unable to read it.
func ServiceOwner(goos string, euid int, getenv func(string) string, lookup func(string) (*user.User, error)) (*user.User, error) {
	if euid != 0 {
		return nil, nil
	}
	if goos != "darwin" {
		u, err := lookup(ServiceUser)
		if err != nil {
			return nil, nil
		}
		return u, nil
	}
	name := getenv("SUDO_USER")
	if name == "" || name == "root" {
		return nil, nil // root itself: there is no other user to give it to
	}
	u, err := lookup(name)
	if err != nil {
		return nil, fmt.Errorf("$SUDO_USER %s, who the agent runs as on a Mac: %w", name, err)
	}
	return u, nil
}

// Written says what an init wrote and what the person does next.
type Written struct {
	// Config and EnvFile are the paths written.
	Config, EnvFile string
	// Next are the lines to print: the next steps, with the command to paste elsewhere.
	Next []string
}

// secretHex is n random bytes in hex: a tunnel token or admin key.
func secretHex(r io.Reader, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("setup: no randomness for a secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// secretBase64 is n random bytes in base64: a cluster gossip key.
func secretBase64(r io.Reader, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("setup: no randomness for a secret: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// quote writes s as a YAML double-quoted scalar that the config loader reads back as s: JSON
// string syntax is YAML's, and "$" is doubled so that it is not taken for ${VAR}.
func quote(s string) string {
	b, _ := json.Marshal(strings.ReplaceAll(s, "$", "$$"))
	return string(b)
}

// file is one file to write with its mode; secret files go to the service user.
type file struct {
	path   string
	mode   fs.FileMode
	data   []byte
	secret bool
}

// writeFiles refuses to replace an existing file unless force, writes every file beside its
// final path, lets validate check the config at its temporary path, and only then renames
// them into place: a failed init leaves what was there before.
func writeFiles(files []file, force bool, env Env, validate func(tmp map[string]string) error) error {
	for _, f := range files {
		if _, err := os.Lstat(f.path); err == nil && !force {
			return fmt.Errorf("%s exists: pass --force to replace it (its secrets will change), or --dir DIR to write elsewhere", f.path)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("setup: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return fmt.Errorf("setup: cannot create %s: %w (run as root, or pass --dir DIR)", filepath.Dir(f.path), err)
		}
	}
	tmp := map[string]string{}
	cleanup := func() {
		for _, p := range tmp {
			os.Remove(p)
		}
	}
	for _, f := range files {
		p, err := writeTemp(f, env)
		if err != nil {
			cleanup()
			return err
		}
		tmp[f.path] = p
	}
	if err := validate(tmp); err != nil {
		cleanup()
		return err
	}
	for _, f := range files {
		if err := os.Rename(tmp[f.path], f.path); err != nil {
			cleanup()
			return fmt.Errorf("setup: %w", err)
		}
	}
	return nil
}

func writeTemp(f file, env Env) (string, error) {
	t, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".*")
	if err != nil {
		return "", fmt.Errorf("setup: cannot write in %s: %w (run as root, or pass --dir DIR)", filepath.Dir(f.path), err)
	}
	name := t.Name()
	_, werr := t.Write(f.data)
	cerr := t.Close()
	err = errors.Join(werr, cerr, os.Chmod(name, f.mode))
	if err == nil && f.secret {
		if cerr := env.Chown(name); cerr != nil {
			err = fmt.Errorf("give %s to the user the service runs as: %w", f.path, cerr)
		}
	}
	if err != nil {
		os.Remove(name)
		return "", fmt.Errorf("setup: %w", err)
	}
	return name, nil
}

// withConfig is command with --config path added when path is not where hearth looks by
// default, so that a printed next step runs as printed.
func withConfig(command, path, defaultPath string) string {
	if path == defaultPath {
		return command
	}
	return command + " --config " + path
}

// envFile renders VAR=value lines under a header.
func envFile(header string, vars [][2]string) []byte {
	var b strings.Builder
	b.WriteString(header)
	for _, kv := range vars {
		b.WriteString(kv[0] + "=" + kv[1] + "\n")
	}
	return []byte(b.String())
}

// readBack reads the env file written at path as hearth reads it and checks that it gives
// back exactly vars; its lookup resolves ${VAR} from that file only, never the caller's
// environment, so that validation proves the pair of files works on its own.
func readBack(path string, vars [][2]string) (func(string) (string, bool), error) {
	env, err := config.ReadEnvFile(path)
	if err != nil {
		return nil, fmt.Errorf("setup: the env file written does not read back: %w", err)
	}
	for _, kv := range vars {
		if v, ok := env[kv[0]]; !ok || v != kv[1] {
			return nil, fmt.Errorf("setup: %s does not read back from the env file as written", kv[0])
		}
	}
	if len(env) != len(vars) {
		return nil, fmt.Errorf("setup: the env file written holds %d variables, not the %d written", len(env), len(vars))
	}
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil
}

// envValueProblem says why v cannot be a value in an env file that systemd, docker compose
// and hearth all read the same way ("" when it can).
func envValueProblem(v string) string {
	if strings.TrimSpace(v) != v {
		return "spaces at its ends"
	}
	if i := strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f || strings.ContainsRune("\"'`$", r) }); i >= 0 {
		return fmt.Sprintf("the character %q", v[i])
	}
	return ""
}

// renamedError shows the final path in a validation message about the temporary file.
func renamedError(err error, tmp map[string]string) error {
	msg := err.Error()
	for final, t := range tmp {
		msg = strings.ReplaceAll(msg, t, final)
	}
	return errors.New(msg)
}

// absPaths makes the paths given on the command line absolute: the service runs from another
// directory (systemd's is /), where a --cert relative to the user's shell failed to load.
func absPaths(paths ...*string) error {
	for _, p := range paths {
		if *p == "" || filepath.IsAbs(*p) {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("%s: %w: give an absolute path", *p, err)
		}
		*p = abs
	}
	return nil
}
