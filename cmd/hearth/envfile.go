package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/internal/config"
)

// readsConfig annotates the commands that load a role's config (and so its ${VAR}s): for
// them an env file beside the config that exists but cannot be read is an error. The other
// commands (version, health, status, ...) run as any user on a machine whose env files are
// the service user's.
const readsConfig = "hearth/reads-config"

func commandReadsConfig(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		if c.Annotations[readsConfig] != "" {
			return true
		}
	}
	return false
}

// loadEnvFiles fills the process environment from the env files that `hearth init` writes
// beside the configs, so that `hearth relay`, `hearth token` and the rest find the ${VAR}s
// outside systemd (which reads them itself with EnvironmentFile=). --env-file names one;
// without it, ROLE.env beside --config, or /etc/hearth/{agent,relay}.env, when they exist.
// A variable already set wins. One that exists but cannot be read is an error when strict and
// its config still needs a variable from it (a container's env_file may have set them all).
// read is config.ReadEnvFile; tests, which may run as root, fake a file root cannot read.
func loadEnvFiles(envFile, configPath string, strict bool, read func(string) (map[string]string, error)) error {
	if envFile != "" {
		return applyEnvFile(envFile, read)
	}
	var configs []string
	if configPath != "" {
		configs = []string{configPath}
	} else {
		dir := filepath.Dir(config.DefaultAgentPath)
		configs = []string{filepath.Join(dir, "agent.yaml"), filepath.Join(dir, "relay.yaml")}
	}
	for _, cfg := range configs {
		p := strings.TrimSuffix(cfg, filepath.Ext(cfg)) + ".env"
		err := applyEnvFile(p, read)
		switch {
		case err == nil || errors.Is(err, fs.ErrNotExist):
		case errors.Is(err, fs.ErrPermission):
			if !strict {
				continue
			}
			if unset := config.UnsetVars(cfg, os.LookupEnv); len(unset) > 0 {
				return unreadableEnvFile(p, cfg, unset)
			}
		default:
			return err
		}
	}
	return nil
}

// unreadableEnvFile says what to do about an env file that holds what cfg needs but this user
// may not read: until now the config failed later on "${VAR} is not set", far from the cause.
func unreadableEnvFile(path, cfg string, unset []string) error {
	who := "this user"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	return fmt.Errorf("%s exists but %s may not read it, and %s needs ${%s} from it: run hearth with sudo "+
		"(or as the user the file belongs to), or give the file to %s: sudo chown %s %s",
		path, who, cfg, strings.Join(unset, "}, ${"), who, who, path)
}

func applyEnvFile(path string, read func(string) (map[string]string, error)) error {
	env, err := read(path)
	if err != nil {
		return fmt.Errorf("--env-file: %w", err)
	}
	for k, v := range env {
		if _, set := os.LookupEnv(k); !set {
			if err := os.Setenv(k, v); err != nil {
				return fmt.Errorf("--env-file %s: %w", path, err)
			}
		}
	}
	return nil
}
