package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/agent"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/doctor"
	"github.com/hearthlab/hearth/internal/logging"
	"github.com/hearthlab/hearth/relay"
)

// Set by the Makefile with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

type globalFlags struct {
	config    string
	envFile   string
	logLevel  string
	logFormat string
}

func newRoot() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "hearth",
		Short: "hearth: the home-lab edge appliance for self-hosted LLMs",
		Long: `hearth is one binary with three roles:

  hearth agent    runs on every home machine: fronts its Ollama with the Ollama and OpenAI APIs
                  and routes each request to a node that has the model
  hearth relay    runs on a VPS: public HTTPS, the tunnel from home, tokens and vendor fallback
  operator        commands such as "hearth config check" and "hearth version"`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.config, "config", "", "config file (default /etc/hearth/<role>.yaml; built-in defaults when it does not exist)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "auto", "json, text, or auto (json when stderr is not a terminal)")
	root.AddCommand(readingConfig(newAgentCmd(g), newRelayCmd(g), newTokenCmd(g), newUsageCmd(g), newChannelCmd(g),
		newConfigCmd(g), newDoctorCmd(g, doctor.Env{}))...)
	root.AddCommand(newStatusCmd(), newVersionCmd(), newModelsCmd(), newWakeCmd(), newRagCmd(),
		newInitCmd(defaultInitDeps()), newHealthCmd())
	root.PersistentFlags().StringVar(&g.envFile, "env-file", "", "VAR=value file for the config's ${VAR}s (default: ROLE.env beside the config, as hearth init writes it)")
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		cfg := g.config
		if cfg == "" && cmd.Annotations[configArg] != "" && len(args) == 1 {
			cfg = args[0]
		}
		return loadEnvFiles(g.envFile, cfg, commandReadsConfig(cmd), config.ReadEnvFile)
	}
	return root
}

// configArg annotates a command whose one argument is the config file (config check FILE):
// the env file beside it fills its ${VAR}s, as beside --config for the others.
const configArg = "hearth/config-arg"

// readingConfig marks cmds as loading a role's config (see readsConfig).
func readingConfig(cmds ...*cobra.Command) []*cobra.Command {
	for _, c := range cmds {
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[readsConfig] = "yes"
	}
	return cmds
}

func newAgentCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "agent",
		Short: "Run the agent on a home machine: the Ollama- and OpenAI-compatible API in front of its Ollama",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(os.Stderr, g.logLevel, g.logFormat)
			if err != nil {
				return err
			}
			cfg, err := loadAgentConfig(g.config, log)
			if err != nil {
				return err
			}
			a, err := agent.New(cfg, log, versionString())
			if err != nil {
				return err
			}
			return runNotified(cmd.Context(), log, systemdNotifier(), a.Run, healthzAlive(a.Addr()))
		},
	}
}

// loadAgentConfig reads the file named by --config; without --config it reads the default
// path when it exists and otherwise runs on built-in defaults, saying so.
func loadAgentConfig(path string, log *slog.Logger) (config.Agent, error) {
	if path == "" {
		if _, err := os.Stat(config.DefaultAgentPath); errors.Is(err, fs.ErrNotExist) {
			log.Info("no config file: running on built-in defaults (write " + config.DefaultAgentPath + " or pass --config FILE; see configs/agent.yaml)")
			cfg := config.DefaultAgent()
			return cfg, cfg.Validate()
		}
		path = config.DefaultAgentPath
	}
	cfg, err := config.LoadAgent(path)
	if err != nil {
		return cfg, err
	}
	log.Info("config loaded", "file", path)
	return cfg, nil
}

func newRelayCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "relay",
		Short: "Run the relay on a VPS: public HTTPS by ACME, the tunnel from home, tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(os.Stderr, g.logLevel, g.logFormat)
			if err != nil {
				return err
			}
			path := g.config
			if path == "" {
				path = config.DefaultRelayPath
			}
			cfg, err := config.LoadRelay(path)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("%w: the relay needs a config (domains, tunnel token, admin key); start from configs/relay.yaml", err)
				}
				return err
			}
			log.Info("config loaded", "file", path)
			r, err := relay.New(cfg, path, log)
			if err != nil {
				return err
			}
			// SIGHUP re-reads channels and routes without dropping requests in flight; the
			// reload loop ends with the relay, and the command waits for it.
			ctx, cancel := context.WithCancel(cmd.Context())
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			var reloads sync.WaitGroup
			defer func() { cancel(); reloads.Wait() }()
			reloads.Go(func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						if err := r.Reload(); err == nil {
							log.Info("SIGHUP: channels reloaded", "file", path)
						}
					}
				}
			})
			return runNotified(ctx, log, systemdNotifier(), r.Run, relayAlive(r.HTTPSAddr(), cfg.Domains[0]))
		},
	}
}

func newConfigCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with config files"}
	var role string
	check := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a config file without starting anything",
		Long: "Validate a config file (FILE, or --config) without starting anything. Its role is --role, " +
			"else relay for a file named relay*.yaml and agent for any other.",
		Args:        cobra.MaximumNArgs(1),
		Annotations: map[string]string{configArg: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			path := g.config
			if len(args) == 1 {
				path = args[0]
			}
			if path == "" {
				return fmt.Errorf("name the file: hearth config check FILE (or --config FILE)")
			}
			r := role
			if r == "" {
				r = "agent"
				if strings.HasPrefix(filepath.Base(path), "relay") {
					r = "relay"
				}
			}
			switch r {
			case "agent":
				if _, err := config.LoadAgent(path); err != nil {
					return err
				}
			case "relay":
				if _, err := config.LoadRelay(path); err != nil {
					return err
				}
			default:
				return fmt.Errorf("--role %q: use agent or relay", role)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s config)\n", path, r)
			return nil
		},
	}
	check.Flags().StringVar(&role, "role", "", "which role the file configures: agent or relay (default: relay for relay*.yaml, else agent)")
	cmd.AddCommand(check)
	return cmd
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print hearth's version, commit and Go version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "hearth %s\n", versionString())
		},
	}
}

func versionString() string {
	c := commit
	if c == "" {
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					c = s.Value[:12]
				}
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("%s (commit %s, %s %s/%s)", version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
