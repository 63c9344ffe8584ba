package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/relay/chain"
)

// adminClient calls the relay's admin API.
type adminClient struct {
	base, key string
}

func newChannelCmd(g *globalFlags) *cobra.Command {
	var relayURL, key string
	cmd := &cobra.Command{Use: "channel", Short: "See and test the relay's channels (home and vendor APIs)"}
	cmd.PersistentFlags().StringVar(&relayURL, "relay", "", "the relay's URL (default https://<first domain> from --config)")
	cmd.PersistentFlags().StringVar(&key, "admin-key", "", "the relay's admin key (default $HEARTH_ADMIN_KEY, else admin_key from --config)")
	client := func() (*adminClient, error) { return newAdminClient(g, relayURL, key) }

	list := &cobra.Command{Use: "list", Short: "Each channel's state, last error, latency and success rate", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var out struct {
				Channels []chain.ChannelView `json:"channels"`
			}
			if err := c.do(cmd.Context(), http.MethodGet, "/admin/v1/channels", &out); err != nil {
				return err
			}
			renderChannels(cmd.OutOrStdout(), out.Channels)
			return nil
		}}
	test := &cobra.Command{Use: "test NAME", Short: "Make one real call on a channel (its probe_model; home: its model list)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var out struct {
				OK    bool   `json:"ok"`
				MS    int64  `json:"ms"`
				Error string `json:"error"`
			}
			if err := c.do(cmd.Context(), http.MethodPost, "/admin/v1/channels/"+args[0]+"/test", &out); err != nil {
				return err
			}
			if !out.OK {
				return fmt.Errorf("channel %s failed after %d ms: %s", args[0], out.MS, out.Error)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "channel %s answered in %d ms\n", args[0], out.MS)
			return nil
		}}
	reload := &cobra.Command{Use: "reload", Short: "Re-read channels and routes from the relay's config file (like SIGHUP)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var out struct {
				Channels []chain.ChannelView `json:"channels"`
			}
			if err := c.do(cmd.Context(), http.MethodPost, "/admin/v1/channels/reload", &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reloaded: %d channel(s)\n", len(out.Channels))
			return nil
		}}
	cmd.AddCommand(list, test, reload)
	return cmd
}

func newAdminClient(g *globalFlags, relayURL, key string) (*adminClient, error) {
	if key == "" {
		key = os.Getenv("HEARTH_ADMIN_KEY")
	}
	if relayURL == "" || key == "" {
		path := g.config
		if path == "" {
			path = config.DefaultRelayPath
		}
		cfg, err := config.LoadRelay(path)
		if err != nil {
			return nil, fmt.Errorf("%w (or pass --relay URL and --admin-key)", err)
		}
		if relayURL == "" {
			relayURL = "https://" + cfg.Domains[0]
		}
		if key == "" {
			key = cfg.AdminKey
		}
	}
	return &adminClient{base: strings.TrimRight(relayURL, "/"), key: key}, nil
}

func (c *adminClient) do(ctx context.Context, method, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(nil))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the relay at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the relay answered %s: %s", resp.Status, errorMessage(body))
	}
	return json.Unmarshal(body, out)
}

func renderChannels(w io.Writer, chs []chain.ChannelView) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tTYPE\tPRIO\tSTATE\tREQUESTS\tSUCCESS\tLATENCY\tKEYS\tLAST ERROR")
	for _, c := range chs {
		var keys []string
		for _, k := range c.Keys {
			s := k.ID + ":" + k.State
			if k.Disabled != "" {
				s = k.ID + ":DISABLED"
			}
			keys = append(keys, s)
		}
		last := c.LastError
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%.0f%%\t%d ms\t%s\t%s\n", c.Name, c.Type, c.Priority, c.State, c.Requests, 100*c.SuccessRate,
			c.LatencyMS, list(keys), last)
	}
	tw.Flush()
}
