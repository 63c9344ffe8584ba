//go:build !linux

package agent

import "syscall"

// childAttr puts a child in its own process group. There is no parent-death signal outside
// Linux (a Mac's launchd stops the group when the agent's job ends).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
