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

// Install writes the unit (and the agent's mount drop-in) under Root, reloads systemd and
// enables the unit; it returns the files written.
func (s Systemd) Install(ctx context.Context) ([]string, error) {
	s, err := s.complete()
	if err != nil {
		return nil, err
	}
	unit, err := RenderUnit(s.Role, s.Binary, s.ConfigDir)
	if err != nil {
		return nil, err
	}
	name := "hearth-" + s.Role + ".service"
	dir := filepath.Join(s.Root, "etc", "systemd", "system")
	written := []string{filepath.Join(dir, name)}
	if err := writePlain(written[0], unit); err != nil {
		return nil, err
	}
	dropIn := filepath.Join(dir, name+".d", "models-dir.conf")
	if s.Role == "agent" && s.ModelsDir != "" {
		if !filepath.IsAbs(s.ModelsDir) || strings.ContainsAny(s.ModelsDir, "\n%") {
			return nil, fmt.Errorf("setup: --models-dir %q: give an absolute path without %% or line breaks", s.ModelsDir)
		}
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

// RenderUnit is the shipped unit of role with ExecStart, EnvironmentFile and --config
// pointing at binary and configDir.
func RenderUnit(role, binary, configDir string) ([]byte, error) {
	unit, err := deploy.Unit(role)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(binary+configDir, " \n%") {
		return nil, fmt.Errorf("setup: %q and %q must not hold spaces, %% or line breaks (systemd would split them)", binary, configDir)
	}
	unit = bytes.ReplaceAll(unit, []byte("ExecStart=/usr/bin/hearth "), []byte("ExecStart="+binary+" "))
	unit = bytes.ReplaceAll(unit, []byte("/etc/hearth/"), []byte(strings.TrimRight(configDir, "/")+"/"))
	return unit, nil
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
