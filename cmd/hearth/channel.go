package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/doctor"
	"github.com/hearthlab/hearth/relay/chain"
)

// adminClient calls the relay's admin API.
type adminClient struct {
	base, key string
	http      *http.Client
	where     string // how base is reached, for errors: "" or " (on 127.0.0.1:443)"
}

func newChannelCmd(g *globalFlags) *cobra.Command {
	var relayURL, key string
	cmd := &cobra.Command{Use: "channel", Short: "See and test the relay's channels (home and vendor APIs)"}
	cmd.PersistentFlags().StringVar(&relayURL, "relay", "", "the relay's URL (default: the relay on this machine, listen.https of --config, asked as its first domain)")
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
		if key == "" {
			key = cfg.AdminKey
		}
		if relayURL == "" {
			return localAdminClient(cfg, key)
		}
	}
	return &adminClient{base: strings.TrimRight(relayURL, "/"), key: key, http: http.DefaultClient}, nil
}

// localAdminClient asks the relay on this machine, where these commands run: on its
// listen.https by loopback, verifying the certificate as its first domain, a brought one
// (signed by a private CA) included. https://DOMAIN needed DNS and hairpin NAT to reach this
// very machine, a listen.https on :443, and a publicly trusted certificate.
func localAdminClient(cfg config.Relay, key string) (*adminClient, error) {
	domain := cfg.Domains[0]
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if cfg.TLS.Cert != "" {
		pem, err := os.ReadFile(cfg.TLS.Cert)
		if err != nil {
			return nil, fmt.Errorf("tls.cert: %w (or pass --relay URL)", err)
		}
		roots.AppendCertsFromPEM(pem) // the chain: its CA, or the leaf itself, then verifies it
	}
	addr := doctor.Loopback(cfg.Listen.HTTPS)
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: domain},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
	}
	return &adminClient{base: "https://" + domain, key: key, http: &http.Client{Transport: tr},
		where: " (on " + addr + ", listen.https of the relay's config; pass --relay URL for another)"}, nil
}

func (c *adminClient) do(ctx context.Context, method, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(nil))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the relay at %s%s: %w", c.base, c.where, err)
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
