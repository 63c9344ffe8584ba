package tokens

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseLifetime reads a token lifetime: "90d", "2w", "12h", "30m", "1d12h"; "" or "never" is 0 (never).
func ParseLifetime(s string) (time.Duration, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	if s == "" || s == "never" {
		return 0, nil
	}
	bad := fmt.Errorf("%q: use a positive number of days, weeks, hours or minutes such as 90d, 2w, 12h, 30m", s)
	var total time.Duration
	rest := s
	for _, unit := range []struct {
		suffix string
		d      time.Duration
	}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		if num, after, ok := strings.Cut(rest, unit.suffix); ok {
			n, err := strconv.Atoi(num)
			if err != nil || n < 0 {
				return 0, bad
			}
			total += time.Duration(n) * unit.d
			rest = after
		}
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil || d < 0 {
			return 0, bad
		}
		total += d
	}
	if total <= 0 {
		return 0, bad
	}
	return total, nil
}
