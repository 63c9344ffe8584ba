package relay

import "time"

// SetShutdownGrace shortens how long a stopping relay lets streams finish, for tests that
// stop one with a stream in flight.
func SetShutdownGrace(rl *Relay, d time.Duration) { rl.grace = d }
