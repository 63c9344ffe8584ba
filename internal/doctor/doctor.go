// Package doctor checks a hearth machine and explains each finding in a sentence: `hearth
// doctor`. The relay's checks read its config, the certificate files and its HTTPS; the
// agent's read its config and ask the running agent (GET /hearth/v1/cluster) and its Ollama.
// Everything outside the process — DNS, interfaces, ports, HTTP — goes through Env, so tests
// replace it. Only cmd/hearth imports it.
package doctor

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
)

// Check is one finding.
type Check struct {
	// Name is short: "DNS", "port 443", "certificate".
	Name string
	OK   bool
	// Warn: the check could not be made (no reference to check against). It is not OK,
	// but it does not fail the report: doctor says so instead of passing it in silence.
	Warn bool
	// Say is the finding in a sentence, with what to do when it is not OK.
	Say string
}

// Report is every check of one role.
type Report struct {
	Role   string
	Checks []Check
}

// OK is true when every check passed or could not be made.
func (r Report) OK() bool {
	for _, c := range r.Checks {
		if !c.OK && !c.Warn {
			return false
		}
	}
	return true
}

// Write prints the report, one line per check.
func (r Report) Write(w io.Writer) {
	failed, warned := 0, 0
	for _, c := range r.Checks {
		mark := "ok  "
		switch {
		case c.OK:
		case c.Warn:
			mark, warned = "warn", warned+1
		default:
			mark, failed = "FAIL", failed+1
		}
		fmt.Fprintf(w, "%s %-12s %s\n", mark, c.Name, c.Say)
	}
	unmade := ""
	if warned > 0 {
		unmade = fmt.Sprintf(" %d could not be made (warn).", warned)
	}
	switch {
	case failed > 0:
		fmt.Fprintf(w, "%s: %d of %d checks failed.%s\n", r.Role, failed, len(r.Checks), unmade)
	case warned > 0:
		fmt.Fprintf(w, "%s: %d of %d checks passed.%s\n", r.Role, len(r.Checks)-warned, len(r.Checks), unmade)
	default:
		fmt.Fprintf(w, "%s: all %d checks passed.\n", r.Role, len(r.Checks))
	}
}

// Env is what the checks take from the machine.
type Env struct {
	// LookupHost resolves a name. Default net.DefaultResolver.LookupHost.
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// InterfaceAddrs are this machine's addresses. Default net.InterfaceAddrs.
	InterfaceAddrs func() ([]net.Addr, error)
	// PublicAddr is this machine's address as the internet sees it, for a VPS behind NAT
	// (a cloud's 1:1 NAT). Default none.
	PublicAddr string
	// Listen tries a port. Default net.Listen.
	Listen func(network, addr string) (net.Listener, error)
	// PortHolder names the process listening on a TCP port ("nginx (pid 812)"), "" when
	// it cannot tell. Default: from /proc.
	PortHolder func(port int) string
	// Dial opens every connection the checks make. Default net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the local clock. Default time.Now.
	Now func() time.Time
	// NTPSynchronized says whether NTP keeps the clock right, for the clock check when no
	// server can be asked. Default: `timedatectl show -p NTPSynchronized`.
	NTPSynchronized func(ctx context.Context) (bool, error)
	// Timeout bounds each network check. Default 5s.
	Timeout time.Duration
}

func (e Env) complete() Env {
	if e.LookupHost == nil {
		e.LookupHost = net.DefaultResolver.LookupHost
	}
	if e.InterfaceAddrs == nil {
		e.InterfaceAddrs = net.InterfaceAddrs
	}
	if e.Listen == nil {
		e.Listen = net.Listen
	}
	if e.PortHolder == nil {
		e.PortHolder = procPortHolder
	}
	if e.Dial == nil {
		e.Dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.Timeout == 0 {
		e.Timeout = 5 * time.Second
	}
	if e.NTPSynchronized == nil {
		e.NTPSynchronized = timedatectlSynchronized
	}
	return e
}

// client is an HTTP client that trusts the system's roots plus the PEM files given, sends
// TLS's SNI as serverName when set, and dials through Env.Dial.
func (e Env) client(serverName string, caFiles ...string) (*http.Client, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	for _, f := range caFiles {
		if f == "" {
			continue
		}
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", f)
		}
	}
	return &http.Client{
		Timeout: e.Timeout,
		Transport: &http.Transport{
			DialContext:     e.Dial,
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName},
			Proxy:           nil,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// portCheck says whether addr's port is free, held by hearth, or held by something else.
func (e Env) portCheck(key, addr string) Check {
	_, portStr, err := net.SplitHostPort(addr)
	name := "port " + portStr
	if err != nil {
		return Check{Name: key, Say: fmt.Sprintf("%s %q is not host:port.", key, addr)}
	}
	ln, err := e.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		return Check{Name: name, OK: true, Say: fmt.Sprintf("%s (%s) is free: hearth can bind it (it is not running now, or listens elsewhere).", addr, key)}
	}
	var port int
	fmt.Sscan(portStr, &port)
	holder := e.PortHolder(port)
	switch {
	case strings.HasPrefix(holder, "hearth "):
		return Check{Name: name, OK: true, Say: fmt.Sprintf("%s (%s) is held by %s.", addr, key, holder)}
	case holder != "":
		return Check{Name: name, Say: fmt.Sprintf("%s (%s) is held by %s, not hearth: stop that program or change %s.", addr, key, holder, key)}
	case strings.Contains(err.Error(), "permission denied"):
		return Check{Name: name, Say: fmt.Sprintf("%s (%s): this user may not bind ports below 1024; the systemd unit grants CAP_NET_BIND_SERVICE (run doctor as root to see who holds it).", addr, key)}
	default:
		return Check{Name: name, Say: fmt.Sprintf("%s (%s) is in use by a process this user cannot see (%v): run `sudo hearth doctor` to name it.", addr, key, err)}
	}
}

// connectedSince says when a connection began, in now's time zone, and how long ago:
// "since 14:02, 3 h ago"; the date too when it was not today.
func connectedSince(since, now time.Time) string {
	since = since.In(now.Location())
	at := since.Format("15:04")
	if y, m, d := since.Date(); y != now.Year() || m != now.Month() || d != now.Day() {
		at = since.Format("2006-01-02 15:04")
	}
	ago := now.Sub(since)
	switch {
	case ago < time.Minute:
		return fmt.Sprintf("since %s, %d s ago", at, int(ago.Seconds()))
	case ago < time.Hour:
		return fmt.Sprintf("since %s, %d min ago", at, int(ago.Minutes()))
	case ago < 48*time.Hour:
		return fmt.Sprintf("since %s, %d h ago", at, int(ago.Hours()))
	default:
		return fmt.Sprintf("since %s, %s ago", at, days(ago))
	}
}

func days(d time.Duration) string {
	n := int(d.Hours() / 24)
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}
