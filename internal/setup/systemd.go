package setup

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/hearthlab/hearth/deploy"
)

// Systemd installs a role's unit, as `hearth init --systemd` does.
type Systemd struct {
	// Root is the file system root to install into. Default "/"; tests give a temp dir.
	Root string
	// Role is "agent" or "relay".
	Role string
	// Binary is the hearth executable ExecStart runs. Default the running executable.
	Binary string
	// ConfigDir holds ROLE.yaml and ROLE.env. Default /etc/hearth.
	ConfigDir string
	// ModelsDir, for the agent, is a models directory the unit must wait for: a drop-in
	// with RequiresMountsFor= is written.
	ModelsDir string
	// Run runs a command (useradd, systemctl). Default: exec it, output to stderr.
	Run func(ctx context.Context, name string, args ...string) error
	// UserExists reports whether the service user exists. Default os/user.Lookup.
	UserExists func(name string) bool
}

func (s Systemd) complete() (Systemd, error) {
	if s.Root == "" {
		s.Root = "/"
	}
	if s.ConfigDir == "" {
		s.ConfigDir = "/etc/hearth"
	}
	if s.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return s, fmt.Errorf("setup: where is hearth's executable? %w", err)
		}
		s.Binary = exe
	}
	if s.Run == nil {
		s.Run = func(ctx context.Context, name string, args ...string) error {
			cmd := exec.CommandContext(ctx, name, args...)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
			}
			return nil
		}
	}
	if s.UserExists == nil {
		s.UserExists = func(name string) bool { _, err := user.Lookup(name); return err == nil }
	}
	return s, nil
}

// EnsureUser creates the fixed service user when it does not exist, as the packages'
// postinstall script does.
func (s Systemd) EnsureUser(ctx context.Context) error {
	s, err := s.complete()
	if err != nil {
		return err
	}
	if s.UserExists(ServiceUser) {
		return nil
	}
	return s.Run(ctx, "useradd", "--system", "--user-group", "--home-dir", "/var/lib/hearth", "--no-create-home",
		"--shell", "/usr/sbin/nologin", "--comment", "hearth", ServiceUser)
}

// PackagedUnitDir is where the .deb and .rpm put the units. A unit of the same name in
// /etc/systemd/system would hide the packaged one, which upgrades then never reach.
const PackagedUnitDir = "/usr/lib/systemd/system"

// Install writes the unit (and the agent's mount drop-in) under Root, reloads systemd and
// enables the unit; it returns the files written. When the packages installed the unit, it
// is left where it is and only drop-ins are written: the mount, and the binary and config
// paths when they are not the packages'.
func (s Systemd) Install(ctx context.Context) ([]string, error) {
	s, err := s.complete()
	if err != nil {
		return nil, err
	}
	if s.Role == "agent" && s.ModelsDir != "" && (!filepath.IsAbs(s.ModelsDir) || strings.ContainsAny(s.ModelsDir, "\n%")) {
		return nil, fmt.Errorf("setup: --models-dir %q: give an absolute path without %% or line breaks", s.ModelsDir)
	}
	name := "hearth-" + s.Role + ".service"
	dir := filepath.Join(s.Root, "etc", "systemd", "system")
	write := s.writeUnit
	if _, err := os.Stat(filepath.Join(s.Root, PackagedUnitDir, name)); err == nil {
		write = s.overPackaged
	}
	written, err := write(dir, name)
	if err != nil {
		return nil, err
	}
	dropIn := filepath.Join(dir, name+".d", "models-dir.conf")
	if s.Role == "agent" && s.ModelsDir != "" {
		conf := fmt.Sprintf("# Written by `hearth init agent --systemd`: start only once the models directory is mounted.\n"+
			"[Unit]\nRequiresMountsFor=%s\n\n[Service]\nReadWritePaths=%s\n", s.ModelsDir, s.ModelsDir)
		if err := writePlain(dropIn, []byte(conf)); err != nil {
			return nil, err
		}
		written = append(written, dropIn)
	} else if err := os.Remove(dropIn); err == nil {
		written = append(written, dropIn+" (removed: no models directory)")
	}
	if err := s.Run(ctx, "systemctl", "daemon-reload"); err != nil {
		return written, err
	}
	if err := s.Run(ctx, "systemctl", "enable", name); err != nil {
		return written, err
	}
	return written, nil
}

// writeUnit writes the whole unit into dir: hearth was not installed by a package.
func (s Systemd) writeUnit(dir, name string) ([]string, error) {
	unit, err := RenderUnit(s.Role, s.Binary, s.ConfigDir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	return []string{path}, writePlain(path, unit)
}

// overPackaged leaves the packaged unit in charge. A copy in dir that this init wrote before
// (the same bytes it would write now) goes; another is kept and named, since it hides the
// packaged unit. Paths that are not the packages' (/usr/bin/hearth, /etc/hearth) go into a
// drop-in that replaces ExecStart= and EnvironmentFile=.
func (s Systemd) overPackaged(dir, name string) ([]string, error) {
	var written []string
	copyPath := filepath.Join(dir, name)
	if old, err := os.ReadFile(copyPath); err == nil {
		if own, err := RenderUnit(s.Role, s.Binary, s.ConfigDir); err == nil && bytes.Equal(old, own) {
			if err := os.Remove(copyPath); err != nil {
				return nil, fmt.Errorf("setup: %w", err)
			}
			written = append(written, copyPath+" (removed: it hid the packaged unit)")
		} else {
			written = append(written, copyPath+" (kept, but it hides "+filepath.Join(PackagedUnitDir, name)+": remove it to follow package upgrades)")
		}
	}
	paths := filepath.Join(dir, name+".d", "paths.conf")
	configDir := strings.TrimRight(s.ConfigDir, "/")
	if s.Binary == "/usr/bin/hearth" && configDir == "/etc/hearth" {
		if err := os.Remove(paths); err == nil {
			written = append(written, paths+" (removed: the packages' paths)")
		}
		return written, nil
	}
	if err := checkUnitPaths(s.Binary, configDir); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("# Written by `hearth init %s --systemd`: this machine's binary and config, over the packaged unit's.\n"+
		"[Service]\nExecStart=\nExecStart=%s %s --config %s/%s.yaml\nEnvironmentFile=\nEnvironmentFile=-%s/%s.env\n",
		s.Role, s.Binary, s.Role, configDir, s.Role, configDir, s.Role)
	if err := writePlain(paths, []byte(conf)); err != nil {
		return nil, err
	}
	return append(written, paths), nil
}

// RenderUnit is the shipped unit of role with ExecStart, EnvironmentFile and --config
// pointing at binary and configDir.
func RenderUnit(role, binary, configDir string) ([]byte, error) {
	unit, err := deploy.Unit(role)
	if err != nil {
		return nil, err
	}
	if err := checkUnitPaths(binary, configDir); err != nil {
		return nil, err
	}
	unit = bytes.ReplaceAll(unit, []byte("ExecStart=/usr/bin/hearth "), []byte("ExecStart="+binary+" "))
	unit = bytes.ReplaceAll(unit, []byte("/etc/hearth/"), []byte(strings.TrimRight(configDir, "/")+"/"))
	return unit, nil
}

func checkUnitPaths(binary, configDir string) error {
	if strings.ContainsAny(binary+configDir, " \n%") {
		return fmt.Errorf("setup: %q and %q must not hold spaces, %% or line breaks (systemd would split them)", binary, configDir)
	}
	return nil
}

func writePlain(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	return nil
}
