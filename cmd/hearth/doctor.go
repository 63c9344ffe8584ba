package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/doctor"
)

// newDoctorCmd is `hearth doctor`: every check of this machine's role, explained; the exit
// status is 0 only when all pass.
func newDoctorCmd(g *globalFlags, env doctor.Env) *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this machine (DNS, ports, certificate, tunnel, Ollama, model store, cluster, clock) and explain what to fix",
		Long: `doctor checks the relay on a VPS or the agent at home and says in a sentence what is
wrong and what to do. The role is --role, else the config that exists (` + config.DefaultRelayPath + `,
` + config.DefaultAgentPath + `; both when both exist). The exit status is 0 only when every check passes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			roles, err := doctorRoles(role, g.config)
			if err != nil {
				return err
			}
			out, ok := cmd.OutOrStdout(), true
			for i, r := range roles {
				if i > 0 {
					fmt.Fprintln(out)
				}
				ok = runDoctor(cmd, out, r, g.config, env) && ok
			}
			if !ok {
				return silentError{errors.New("doctor found problems")}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "agent or relay (default: by which config exists)")
	cmd.Flags().StringVar(&env.PublicAddr, "public-ip", "", "this VPS's public address when it is behind NAT (for the DNS check)")
	return cmd
}

func doctorRoles(role, configPath string) ([]string, error) {
	switch role {
	case "agent", "relay":
		return []string{role}, nil
	case "":
	default:
		return nil, fmt.Errorf("--role %q: use agent or relay", role)
	}
	if configPath != "" {
		if strings.Contains(filepath.Base(configPath), "relay") {
			return []string{"relay"}, nil
		}
		return []string{"agent"}, nil
	}
	var roles []string
	for _, r := range []string{"relay", "agent"} {
		if _, err := os.Stat(defaultConfigPath(r)); !errors.Is(err, fs.ErrNotExist) {
			roles = append(roles, r)
		}
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("neither %s nor %s exists: run `hearth init relay` or `hearth init agent` first, or pass --config FILE --role ROLE",
			config.DefaultRelayPath, config.DefaultAgentPath)
	}
	return roles, nil
}

func defaultConfigPath(role string) string {
	if role == "relay" {
		return config.DefaultRelayPath
	}
	return config.DefaultAgentPath
}

func runDoctor(cmd *cobra.Command, out io.Writer, role, path string, env doctor.Env) bool {
	if path == "" {
		path = defaultConfigPath(role)
	}
	var report doctor.Report
	var err error
	if role == "relay" {
		var cfg config.Relay
		if cfg, err = config.LoadRelay(path); err == nil {
			report = doctor.Relay(cmd.Context(), cfg, env)
		}
	} else {
		var cfg config.Agent
		if cfg, err = config.LoadAgent(path); err == nil {
			report = doctor.Agent(cmd.Context(), cfg, env)
		}
	}
	if err != nil {
		hint := ""
		if strings.Contains(err.Error(), "environment variable") && os.Geteuid() != 0 {
			hint = " (the secrets are in " + strings.TrimSuffix(path, filepath.Ext(path)) + ".env, readable by root and hearth only: run `sudo hearth doctor`)"
		}
		fmt.Fprintf(out, "FAIL %-12s %v%s\n", "config", err, hint)
		return false
	}
	report.Checks = append([]doctor.Check{{Name: "config", OK: true, Say: path + " loads."}}, report.Checks...)
	report.Write(out)
	return report.OK()
}
