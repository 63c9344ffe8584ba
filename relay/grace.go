package relay

import "time"

// SetShutdownGrace sets how long a stopping relay lets streams in flight finish (default
// 15s); call it before Run. Tests that stop a relay with a stream in flight shorten it.
func (rl *Relay) SetShutdownGrace(d time.Duration) { rl.grace = d }
