package doctor

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/hearthlab/hearth/internal/config"
)

// letsEncrypt is the ACME directory when acme.ca is "".
const letsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// Relay checks a relay machine: DNS, ports, certificates, the home tunnel and the clock.
func Relay(ctx context.Context, cfg config.Relay, env Env) Report {
	env = env.complete()
	r := Report{Role: "relay"}
	for _, d := range cfg.Domains {
		r.Checks = append(r.Checks, env.dnsCheck(ctx, d))
	}
	r.Checks = append(r.Checks, env.portCheck("listen.https", cfg.Listen.HTTPS))
	if cfg.Listen.HTTP != "" {
		r.Checks = append(r.Checks, env.portCheck("listen.http", cfg.Listen.HTTP))
	}
	r.Checks = append(r.Checks, env.portCheck("tunnel.bind", cfg.Tunnel.Bind))
	for _, d := range cfg.Domains {
		r.Checks = append(r.Checks, certCheck(cfg, d, env))
	}
	r.Checks = append(r.Checks, env.relayTunnelCheck(ctx, cfg))
	r.Checks = append(r.Checks, env.clockCheck(ctx, env.relayClockRefs(cfg)))
	return r
}

// relayClockRefs are the servers a relay's clock is compared with: the ACME CA it uses (Let's
// Encrypt by default), or, with a brought certificate, the one acme.ca names if any; none
// otherwise, and the clock check asks systemd about NTP.
func (e Env) relayClockRefs(cfg config.Relay) []clockRef {
	ca := cfg.ACME.CA
	if ca == "" && cfg.TLS.Cert == "" {
		ca = letsEncrypt
	}
	if ca == "" {
		return nil
	}
	client, err := e.client("", cfg.ACME.CARoot)
	if err != nil {
		err = fmt.Errorf("acme.ca_root: %v", err)
	}
	return []clockRef{{whose: "the ACME CA", url: ca, client: client, broken: err}}
}

func (e Env) dnsCheck(ctx context.Context, domain string) Check {
	c := Check{Name: "DNS"}
	ctx, cancel := context.WithTimeout(ctx, e.Timeout)
	defer cancel()
	resolved, err := e.LookupHost(ctx, domain)
	if err != nil || len(resolved) == 0 {
		c.Say = fmt.Sprintf("%s does not resolve (%v): create an A (and AAAA) record pointing at this machine's public address.", domain, err)
		return c
	}
	var mine []string
	if addrs, err := e.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				mine = append(mine, ipn.IP.String())
			}
		}
	}
	if e.PublicAddr != "" {
		mine = append(mine, e.PublicAddr)
	}
	var elsewhere []string
	for _, a := range resolved {
		if ip := net.ParseIP(a); ip != nil && slices.ContainsFunc(mine, func(m string) bool { return net.ParseIP(m).Equal(ip) }) {
			c.OK, c.Say = true, fmt.Sprintf("%s points at this machine (%s).", domain, a)
			return c
		}
		elsewhere = append(elsewhere, a)
	}
	c.Say = fmt.Sprintf("%s resolves to %s, which is not an address of this machine (%s): point its A/AAAA record here, or pass --public-ip if this VPS is behind NAT.",
		domain, strings.Join(elsewhere, ", "), strings.Join(mine, ", "))
	return c
}

// certCheck reads the certificate the relay serves for domain: the brought file, or the one
// certmagic keeps in acme.storage.
func certCheck(cfg config.Relay, domain string, env Env) Check {
	c := Check{Name: "certificate"}
	var files []string
	source := "tls.cert"
	if cfg.TLS.Cert != "" {
		files = []string{cfg.TLS.Cert}
	} else {
		source = "acme.storage"
		// certmagic's layout: certificates/<issuer>/<name>/<name>.crt, names made safe alike.
		safe := certmagic.StorageKeys.Safe(domain)
		files, _ = filepath.Glob(filepath.Join(cfg.ACME.Storage, "certificates", "*", safe, safe+".crt"))
	}
	if len(files) == 0 {
		c.Say = fmt.Sprintf("no certificate for %s in %s yet: the relay obtains one when it starts, once DNS points here and ports 80/443 are reachable from the internet.", domain, cfg.ACME.Storage)
		return c
	}
	var best *x509.Certificate
	var bestFile string
	for _, f := range files {
		cert, err := readLeaf(f)
		if err != nil {
			c.Say = fmt.Sprintf("%s %s: %v.", source, f, err)
			return c
		}
		if best == nil || cert.NotAfter.After(best.NotAfter) {
			best, bestFile = cert, f
		}
	}
	if err := best.VerifyHostname(domain); err != nil {
		c.Say = fmt.Sprintf("%s (%s) does not cover %s (it names %s): bring one that does, or remove tls: to use ACME.", source, bestFile, domain, strings.Join(best.DNSNames, ", "))
		return c
	}
	left := best.NotAfter.Sub(env.Now())
	issuer := best.Issuer.CommonName
	// A brought certificate is the user's to renew; ACME's renews itself, so one close to its
	// end means renewal keeps failing.
	fix := "renew it (ACME renews by itself while the relay runs and port 80/443 is reachable)"
	soon := "renewal is overdue; see the relay's log"
	if cfg.TLS.Cert != "" {
		fix = "put a renewed certificate in " + bestFile + " (tls.cert) and its key in tls.key: the relay picks them up within a minute"
		soon = fix
	}
	switch {
	case left <= 0:
		c.Say = fmt.Sprintf("the certificate for %s expired on %s: %s.", domain, best.NotAfter.Format("2006-01-02"), fix)
	case left < 7*24*time.Hour:
		c.Say = fmt.Sprintf("the certificate for %s expires in %s (%s): %s.", domain, days(left), best.NotAfter.Format("2006-01-02"), soon)
	default:
		c.OK, c.Say = true, fmt.Sprintf("the certificate for %s from %s is valid until %s (%s left).", domain, issuer, best.NotAfter.Format("2006-01-02"), days(left))
	}
	return c
}

func readLeaf(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("no PEM certificate in it")
	}
	return x509.ParseCertificate(block.Bytes)
}

// relayTunnelCheck asks the running relay (its own HTTPS, on this machine) whether home is
// connected, and since when.
func (e Env) relayTunnelCheck(ctx context.Context, cfg config.Relay) Check {
	c := Check{Name: "tunnel"}
	if len(cfg.Domains) == 0 {
		c.Say = "no domains: the relay cannot be asked."
		return c
	}
	domain := cfg.Domains[0]
	client, err := e.client(domain, cfg.TLS.Cert)
	if err != nil {
		c.Say = fmt.Sprintf("tls.cert: %v.", err)
		return c
	}
	ctx, cancel := context.WithTimeout(ctx, e.Timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+Loopback(cfg.Listen.HTTPS)+"/admin/v1/agents", nil)
	req.Host = domain
	req.Header.Set("Authorization", "Bearer "+cfg.AdminKey)
	resp, err := client.Do(req)
	if err != nil {
		c.Say = fmt.Sprintf("the relay does not answer on %s (%v): is it running? (systemctl status hearth-relay)", cfg.Listen.HTTPS, err)
		return c
	}
	defer resp.Body.Close()
	var agents struct {
		Home struct {
			Name   string    `json:"name"`
			Online bool      `json:"online"`
			Since  time.Time `json:"since"`
		} `json:"home"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &agents) != nil {
		c.Say = fmt.Sprintf("the relay answered GET /admin/v1/agents with %s: is admin_key the running relay's?", resp.Status)
		return c
	}
	if !agents.Home.Online {
		c.Say = fmt.Sprintf("no home agent is connected as %q: start `hearth agent` at home with tunnel.relay %s:%s and this relay's tunnel token; run `hearth doctor` there.",
			agents.Home.Name, domain, portOf(cfg.Tunnel.Bind))
		return c
	}
	since := "(this relay does not say since when: it is older than this hearth)"
	if !agents.Home.Since.IsZero() {
		since = connectedSince(agents.Home.Since, e.Now())
	}
	c.OK, c.Say = true, fmt.Sprintf("the home agent %q is connected through the tunnel %s.", agents.Home.Name, since)
	return c
}

// Loopback is where this machine reaches a listener bound to addr (":443" → 127.0.0.1:443).
func Loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
