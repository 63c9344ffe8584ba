package doctor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"time"
)

// clockLimit is the skew past which certificates and tokens start or end at the wrong time.
const clockLimit = 30 * time.Second

// clockRef is a server whose Date header this clock is compared with.
type clockRef struct {
	whose  string // "the relay", "the peer nas", "the ACME CA"
	url    string
	client *http.Client
	// broken says why it cannot be asked at all (a CA file that does not load); the check
	// names it and goes on to the next reference.
	broken error
}

// clockCheck compares this clock with the first of refs that answers with a Date header. When
// none does (or there is none), it asks systemd whether NTP keeps the clock right, and when
// that cannot tell either, it warns that the clock went unchecked rather than passing it.
func (e Env) clockCheck(ctx context.Context, refs []clockRef) Check {
	var unanswered []string
	for _, ref := range refs {
		skew, err := e.skewFrom(ctx, ref)
		if err != nil {
			unanswered = append(unanswered, err.Error())
			continue
		}
		if skew > clockLimit {
			return Check{Name: "clock", Say: fmt.Sprintf("this clock is %s off %s's: certificates and tokens expire wrongly; enable NTP (timedatectl set-ntp true).",
				skew.Round(time.Second), ref.whose)}
		}
		return Check{Name: "clock", OK: true, Say: fmt.Sprintf("this clock agrees with %s's within %s.", ref.whose, clockLimit)}
	}
	return e.ntpCheck(ctx, unanswered)
}

// skewFrom is how far this clock is from ref's Date header, either way.
func (e Env) skewFrom(ctx context.Context, ref clockRef) (time.Duration, error) {
	if ref.broken != nil {
		return 0, fmt.Errorf("%s cannot be asked: %v", ref.whose, ref.broken)
	}
	ctx, cancel := context.WithTimeout(ctx, e.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ref.url, nil)
	if err != nil {
		return 0, fmt.Errorf("%s cannot be asked (%s): %v", ref.whose, ref.url, err)
	}
	sent := e.Now()
	resp, err := ref.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s does not answer (%v)", ref.whose, err)
	}
	resp.Body.Close()
	theirs, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return 0, fmt.Errorf("%s sent no Date header (%s)", ref.whose, ref.url)
	}
	// The header has whole seconds: compare with the middle of the exchange, truncated alike.
	local := sent.Add(e.Now().Sub(sent) / 2).Truncate(time.Second)
	skew := local.Sub(theirs)
	if skew < 0 {
		skew = -skew
	}
	return skew, nil
}

// ntpCheck is the clock check without a server to compare with: systemd's word on NTP.
func (e Env) ntpCheck(ctx context.Context, unanswered []string) Check {
	c := Check{Name: "clock"}
	why := "no server to compare it with"
	if len(unanswered) > 0 {
		why = "no reference answered: " + strings.Join(unanswered, "; ")
	}
	ctx, cancel := context.WithTimeout(ctx, e.Timeout)
	defer cancel()
	synced, err := e.NTPSynchronized(ctx)
	switch {
	case err != nil:
		c.Warn, c.Say = true, fmt.Sprintf("cannot check: %s, and timedatectl cannot tell whether NTP keeps this clock right (%v); make sure an NTP client runs here.", why, err)
	case !synced:
		c.Say = fmt.Sprintf("%s, and timedatectl says this clock is not NTP-synchronized: certificates and tokens expire wrongly; enable NTP (timedatectl set-ntp true).", why)
	default:
		c.OK, c.Say = true, fmt.Sprintf("%s; timedatectl says NTP keeps this clock synchronized.", why)
	}
	return c
}

// timedatectlSynchronized asks systemd (timedated) whether the kernel's clock is synchronized
// by NTP, whichever client does it (systemd-timesyncd, chrony, ntpd).
func timedatectlSynchronized(ctx context.Context) (bool, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "timedatectl", "show", "-p", "NTPSynchronized", "--value")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg, _, _ := strings.Cut(strings.TrimSpace(stderr.String()), "\n"); msg != "" {
			return false, errors.New(strings.TrimSuffix(msg, "."))
		}
		return false, err
	}
	return parseNTPSynchronized(string(out))
}

func parseNTPSynchronized(out string) (bool, error) {
	switch v := strings.TrimSpace(out); v {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	default:
		return false, fmt.Errorf("timedatectl answered NTPSynchronized=%q, not yes or no", v)
	}
}
