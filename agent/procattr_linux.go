package agent

import "syscall"

// childAttr puts a child in its own process group (so that what it starts is stopped with
// it) and has the kernel kill it when the agent dies, so that a crashed agent leaves no
// Ollama holding the port and no inhibitor holding the machine awake.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
