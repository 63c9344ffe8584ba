package tokens

import (
	"testing"
	"time"
)

func TestParseLifetime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"", 0, false}, {"never", 0, false},
		{"90d", 90 * 24 * time.Hour, false}, {"2w", 14 * 24 * time.Hour, false},
		{"12h", 12 * time.Hour, false}, {"30m", 30 * time.Minute, false},
		{"1d12h", 36 * time.Hour, false}, {"1w2d", 9 * 24 * time.Hour, false},
		{"soon", 0, true}, {"-1d", 0, true}, {"0d", 0, true}, {"-5m", 0, true}, {"d", 0, true}, {"3x", 0, true},
	} {
		got, err := ParseLifetime(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseLifetime(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}
