package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/internal/setup"
)

// initDeps are the machine parts `hearth init` touches; tests replace them.
type initDeps struct {
	env     setup.Env
	systemd setup.Systemd
	host    func() (string, error)
}

func defaultInitDeps() initDeps { return initDeps{host: os.Hostname} }

// newInitCmd is `hearth init relay|agent`: short configs with fresh secrets, validated.
func newInitCmd(d initDeps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a new machine's config: `hearth init relay` on the VPS, then the printed `hearth init agent` line at home",
	}
	cmd.AddCommand(newInitRelayCmd(d), newInitAgentCmd(d))
	return cmd
}

type initCommon struct {
	dir, stateDir string
	force, unit   bool
}

func (c *initCommon) flags(cmd *cobra.Command) {
	dir, state := "/etc/hearth", "/var/lib/hearth"
	if runtime.GOOS == "darwin" { // the launchd plist's paths; the agent runs as the user
		dir = "/usr/local/etc/hearth"
		if home := agentHome(); home != "" {
			state = filepath.Join(home, "Library", "Application Support", "hearth")
		}
	}
	cmd.Flags().StringVar(&c.dir, "dir", dir, "where the config and its env file (secrets) go")
	cmd.Flags().StringVar(&c.stateDir, "state-dir", state, "the service's state (certificates, database, agent data)")
	cmd.Flags().BoolVar(&c.force, "force", false, "replace existing files (their secrets change)")
	cmd.Flags().BoolVar(&c.unit, "systemd", false, "also install and enable the systemd unit (creates the hearth user when missing)")
}

// agentHome is the home of the user the Mac's launchd agent runs as: under sudo, the one who
// ran it (whose files setup.ServiceOwner gives agent.env to; sudo may or may not keep $HOME).
func agentHome() string {
	if u, err := setup.ServiceOwner(runtime.GOOS, os.Geteuid(), os.Getenv, user.Lookup); err == nil && u != nil && u.HomeDir != "" {
		return u.HomeDir
	}
	home, _ := os.UserHomeDir()
	return home
}

func newInitRelayCmd(d initDeps) *cobra.Command {
	var o setup.Relay
	var c initCommon
	cmd := &cobra.Command{
		Use:   "relay --domain DOMAIN --email EMAIL",
		Short: "Write relay.yaml and relay.env (fresh tunnel token and admin key) and print the line to run at home",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Dir, o.StateDir, o.Force = c.dir, c.stateDir, c.force
			return runInit(cmd.Context(), cmd.OutOrStdout(), d, c, "relay", "", func() (setup.Written, error) {
				return setup.WriteRelay(o, d.env)
			})
		},
	}
	cmd.Flags().StringVar(&o.Domain, "domain", "", "the public DNS name that points at this VPS (required)")
	cmd.Flags().StringVar(&o.Email, "email", "", "your email for the certificate authority's expiry notices (required with ACME)")
	cmd.Flags().StringVar(&o.Cert, "cert", "", "bring your own certificate: PEM chain file (instead of ACME)")
	cmd.Flags().StringVar(&o.Key, "key", "", "the brought certificate's PEM key file")
	c.flags(cmd)
	return cmd
}

func newInitAgentCmd(d initDeps) *cobra.Command {
	var o setup.Agent
	var c initCommon
	cmd := &cobra.Command{
		Use:   "agent [--relay DOMAIN:7000 --token TOKEN] [--join HOST:7946 --cluster-secret KEY]",
		Short: "Write agent.yaml and agent.env: the local Ollama, the home cluster and the tunnel to the relay",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Dir, o.StateDir, o.Force = c.dir, c.stateDir, c.force
			if o.Name == "" {
				host, err := d.host()
				if err != nil {
					return fmt.Errorf("cannot read the host name (%v): pass --name NAME", err)
				}
				o.Name = strings.ToLower(strings.Split(host, ".")[0])
			}
			return runInit(cmd.Context(), cmd.OutOrStdout(), d, c, "agent", o.ModelsDir, func() (setup.Written, error) {
				w, _, err := setup.WriteAgent(cmd.Context(), o, d.env)
				return w, err
			})
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "this machine's name in the cluster (default: the host name)")
	cmd.Flags().StringVar(&o.Relay, "relay", "", "the relay's tunnel address, DOMAIN:7000 (as hearth init relay printed it)")
	cmd.Flags().StringVar(&o.Token, "token", "", "the relay's tunnel token (as hearth init relay printed it)")
	cmd.Flags().StringVar(&o.RelayCA, "relay-ca", "", "PEM file of the CA that signed a brought relay certificate (default: the system's roots)")
	cmd.Flags().StringSliceVar(&o.Join, "join", nil, "an agent already in the cluster, HOST:7946 (repeatable)")
	cmd.Flags().StringVar(&o.ClusterSecret, "cluster-secret", "", "the cluster's HEARTH_CLUSTER_KEY, with --join (default: a fresh one)")
	cmd.Flags().StringVar(&o.OllamaURL, "ollama", "", "the local Ollama's URL (default $OLLAMA_HOST, else http://127.0.0.1:11434)")
	cmd.Flags().BoolVar(&o.NoOllama, "no-ollama", false, "this machine has no Ollama (a NAS): it joins the cluster and routes")
	cmd.Flags().StringVar(&o.ModelsDir, "models-dir", "", "Ollama's models directory on shared storage (NFS): the unit waits for its mount")
	c.flags(cmd)
	return cmd
}

// runInit writes the files and, with --systemd, makes the user first (so the secrets file can
// be given to it) and installs the unit after.
func runInit(ctx context.Context, out io.Writer, d initDeps, c initCommon, role, modelsDir string, write func() (setup.Written, error)) error {
	sd := d.systemd
	if abs, err := filepath.Abs(c.dir); err == nil {
		c.dir = abs // the unit names it, as the written files do (setup makes their paths absolute)
	}
	sd.Role, sd.ConfigDir, sd.ModelsDir = role, c.dir, modelsDir
	if goos := d.env.GOOS; c.unit && (goos == "darwin" || goos == "" && runtime.GOOS == "darwin") {
		return fmt.Errorf("init --systemd: a Mac has no systemd: sudo sh install.sh puts the launchd plist in place; run init without --systemd")
	}
	if c.unit {
		if err := sd.EnsureUser(ctx); err != nil {
			return fmt.Errorf("init --systemd: %w", err)
		}
	}
	w, err := write()
	if err != nil {
		return err
	}
	if c.unit {
		files, err := sd.Install(ctx)
		if err != nil {
			return fmt.Errorf("init --systemd: %w", err)
		}
		w.Next = append([]string{"installed and enabled hearth-" + role + ".service: " + strings.Join(files, ", ")}, w.Next...)
	}
	for _, l := range w.Next {
		fmt.Fprintln(out, l)
	}
	return nil
}
