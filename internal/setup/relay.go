package setup

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/hearthlab/hearth/internal/config"
)

// Relay is what `hearth init relay` is told.
type Relay struct {
	// Domain is the public name that points at this VPS (DNS A/AAAA). Required.
	Domain string
	// Email is given to the ACME CA for expiry notices. Required with ACME.
	Email string
	// Dir is where relay.yaml and relay.env go. Default /etc/hearth.
	Dir string
	// StateDir holds certificates and the database. Default /var/lib/hearth (the units'
	// StateDirectory).
	StateDir string
	// Cert and Key are a certificate the user brings instead of ACME (both or neither).
	Cert, Key string
	// Force replaces existing files.
	Force bool
}

// TunnelPort is the port agents connect to; init writes the default tunnel.bind.
const TunnelPort = "7000"

// WriteRelay writes relay.yaml and relay.env (0600) with a fresh tunnel token and admin key,
// validates them together, and returns the `hearth init agent` line to paste at home.
func WriteRelay(o Relay, env Env) (Written, error) {
	env = env.complete()
	if o.Dir == "" {
		o.Dir = "/etc/hearth"
	}
	if o.StateDir == "" {
		o.StateDir = "/var/lib/hearth"
	}
	if err := checkRelayOptions(o); err != nil {
		return Written{}, err
	}
	if err := absPaths(&o.Dir, &o.StateDir, &o.Cert, &o.Key); err != nil {
		return Written{}, err
	}
	tunnelToken, err := secretHex(env.Random, 24)
	if err != nil {
		return Written{}, err
	}
	adminKey, err := secretHex(env.Random, 24)
	if err != nil {
		return Written{}, err
	}
	cfgPath, envPath := filepath.Join(o.Dir, "relay.yaml"), filepath.Join(o.Dir, "relay.env")
	vars := [][2]string{{"HEARTH_TUNNEL_TOKEN", tunnelToken}, {"HEARTH_ADMIN_KEY", adminKey}}
	files := []file{
		{path: cfgPath, mode: 0o644, data: RenderRelay(o, envPath)},
		{path: envPath, mode: 0o600, secret: true, data: envFile(
			"# Secrets of the hearth relay (written by `hearth init relay`); keep this file private.\n"+
				"# HEARTH_TUNNEL_TOKEN goes into `hearth init agent --token` at home; HEARTH_ADMIN_KEY guards /admin/v1.\n", vars)},
	}
	err = writeFiles(files, o.Force, env, func(tmp map[string]string) error {
		lookup, err := readBack(tmp[envPath], vars)
		if err != nil {
			return renamedError(err, tmp)
		}
		if _, err := config.LoadRelayWith(tmp[cfgPath], lookup); err != nil {
			return renamedError(fmt.Errorf("setup: the relay config written does not load: %w", err), tmp)
		}
		return nil
	})
	if err != nil {
		return Written{}, err
	}
	paste := fmt.Sprintf("hearth init agent --relay %s --token %s", net.JoinHostPort(o.Domain, TunnelPort), tunnelToken)
	if o.Cert != "" {
		paste += " --relay-ca CA.pem"
	}
	next := []string{"wrote " + cfgPath + " and " + envPath + " (secrets, mode 0600)"}
	if note := certNote(o.Cert, o.Key, o.Domain, time.Now()); note != "" {
		next = append(next, "", note)
	}
	next = append(next,
		"",
		"Before starting: the DNS name "+o.Domain+" must point at this machine, and ports 80, 443 and "+TunnelPort+" must be open.",
		"Start the relay:   systemctl enable --now hearth-relay   (or: hearth relay --config "+cfgPath+")",
		"Check it:          "+withConfig("hearth doctor --role relay", cfgPath, config.DefaultRelayPath),
		"A token for the phone:  "+withConfig("hearth token create --name phone", cfgPath, config.DefaultRelayPath),
		"",
		"On the home machine, run this one line:",
		"",
		"  "+paste,
	)
	if o.Cert != "" {
		next = append(next, "", "(with the file of the CA that signed "+o.Cert+" as CA.pem; leave --relay-ca out for a publicly trusted certificate)")
	}
	return Written{Config: cfgPath, EnvFile: envPath, Next: next}, nil
}

// certNote is what init says about a brought certificate that the relay would refuse: files
// that do not load as a certificate and its key (not there yet, swapped, the chain without
// its key), a certificate for another name, or one past its end. The config is written all
// the same (the files may come later); "" when the pair is good or none is brought.
func certNote(cert, key, domain string, now time.Time) string {
	if cert == "" {
		return ""
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return fmt.Sprintf("Note: --cert %s and --key %s do not load as a certificate and its key (%v): the relay starts only once they do.", cert, key, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Sprintf("Note: --cert %s: %v: the relay starts only once it is a certificate.", cert, err)
	}
	if err := leaf.VerifyHostname(domain); err != nil {
		return fmt.Sprintf("Note: --cert %s is not for %s (%v): phones will refuse it; bring one for %s.", cert, domain, err, domain)
	}
	if now.After(leaf.NotAfter) {
		return fmt.Sprintf("Note: --cert %s ended on %s: phones will refuse it; put a renewed one in its place.", cert, leaf.NotAfter.UTC().Format("2006-01-02"))
	}
	return ""
}

func checkRelayOptions(o Relay) error {
	d := strings.TrimSpace(o.Domain)
	if d == "" {
		return fmt.Errorf("--domain is required: the public name that points at this VPS, e.g. --domain ai.example.com")
	}
	if strings.Contains(d, "://") || strings.ContainsAny(d, "/: ") || net.ParseIP(d) != nil {
		return fmt.Errorf("--domain %q: give a bare DNS name such as ai.example.com (no scheme, port or IP address)", o.Domain)
	}
	if (o.Cert == "") != (o.Key == "") {
		return fmt.Errorf("--cert and --key go together: give both to bring a certificate, or neither to use ACME")
	}
	if o.Cert == "" && !strings.Contains(o.Email, "@") {
		return fmt.Errorf("--email is required for ACME (Let's Encrypt sends expiry notices there), e.g. --email me@example.com")
	}
	return nil
}

// RenderRelay is relay.yaml for o: what differs from the defaults, and nothing secret.
func RenderRelay(o Relay, envPath string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# hearth relay for %s, written by `hearth init relay`. ${VAR}s come from %s.\n", o.Domain, envPath)
	b.WriteString("# Check: hearth config check --role relay FILE. Every key, annotated: configs/relay.yaml.\n")
	b.WriteString("listen: { https: \":443\", http: \":80\" }\n")
	fmt.Fprintf(&b, "domains: [%s]\n", quote(o.Domain))
	if o.Cert != "" {
		fmt.Fprintf(&b, "tls: { cert: %s, key: %s }\n", quote(o.Cert), quote(o.Key))
	} else {
		fmt.Fprintf(&b, "acme: { email: %s, storage: %s }\n", quote(o.Email), quote(filepath.Join(o.StateDir, "certs")))
	}
	fmt.Fprintf(&b, "tunnel: { bind: \":%s\", token: \"${HEARTH_TUNNEL_TOKEN}\" }\n", TunnelPort)
	fmt.Fprintf(&b, "db: %s\n", quote(filepath.Join(o.StateDir, "relay.db")))
	b.WriteString("admin_key: \"${HEARTH_ADMIN_KEY}\"\n")
	b.WriteString("channels:\n  - { name: home, type: home }\n")
	return []byte(b.String())
}
