package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hearthlab/hearth/internal/config"
)

// loadEnvFiles fills the process environment from the env files that `hearth init` writes
// beside the configs, so that `hearth relay`, `hearth token` and the rest find the ${VAR}s
// outside systemd (which reads them itself with EnvironmentFile=). --env-file names one;
// without it, ROLE.env beside --config, or /etc/hearth/{agent,relay}.env, when readable.
// A variable already set wins.
func loadEnvFiles(envFile, configPath string) error {
	if envFile != "" {
		return applyEnvFile(envFile)
	}
	var candidates []string
	if configPath != "" {
		candidates = []string{strings.TrimSuffix(configPath, filepath.Ext(configPath)) + ".env"}
	} else {
		dir := filepath.Dir(config.DefaultAgentPath)
		candidates = []string{filepath.Join(dir, "agent.env"), filepath.Join(dir, "relay.env")}
	}
	for _, p := range candidates {
		if err := applyEnvFile(p); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
			return err
		}
	}
	return nil
}

func applyEnvFile(path string) error {
	env, err := config.ReadEnvFile(path)
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
