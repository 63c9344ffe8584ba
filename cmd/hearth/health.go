package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// newHealthCmd is `hearth health`: one GET of a health URL, exit status 0 on 200. It is the
// Docker image's HEALTHCHECK (the image has no shell or curl).
func newHealthCmd() *cobra.Command {
	var url, connect, caFile string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Exit 0 when a hearth health URL answers 200 (the container health check)",
		Long: `health sends GET to --url (default the agent's http://127.0.0.1:11500/healthz) and exits 0
on 200. For the relay, name its domain so its certificate verifies and connect locally:
  hearth health --url https://ai.example.com/healthz --connect 127.0.0.1:443`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return checkHealth(cmd.Context(), cmd.OutOrStdout(), url, connect, caFile, timeout)
		},
	}
	cmd.Flags().StringVar(&url, "url", "http://127.0.0.1:11500/healthz", "the health URL")
	cmd.Flags().StringVar(&connect, "connect", "", "host:port to connect to instead of the URL's host (TLS still verifies the URL's name)")
	cmd.Flags().StringVar(&caFile, "ca", "", "PEM file of roots to trust besides the system's (a brought certificate from a private CA)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the answer")
	return cmd
}

func checkHealth(ctx context.Context, out io.Writer, url, connect, caFile string, timeout time.Duration) error {
	if connect != "" {
		if _, _, err := net.SplitHostPort(connect); err != nil {
			return fmt.Errorf("--connect %q: give host:port, e.g. 127.0.0.1:443", connect)
		}
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--ca %s: no PEM certificate in it", caFile)
		}
	}
	client := healthClient(connect, &tls.Config{RootCAs: roots}, timeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("--url %q: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unhealthy: %s answered %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintf(out, "healthy: %s answered %s\n", url, resp.Status)
	return nil
}

// healthClient asks health URLs: every connection to connect when it is set (TLS still
// names the URL's host), none kept open between checks, redirects not followed. timeout 0
// leaves the bound to the request's context.
func healthClient(connect string, tlsConfig *tls.Config, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: timeout}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		Proxy:             nil,
		TLSClientConfig:   tlsConfig,
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if connect != "" {
				addr = connect
			}
			return dialer.DialContext(ctx, network, addr)
		},
	}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
