package doctor

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procPortHolder finds the process listening on a TCP port from /proc: the socket's inode in
// /proc/net/tcp{,6}, then the process holding that inode among its fds. "" when it cannot
// tell (not Linux, or another user's process and no root). A hearth is named "hearth (pid N)"
// whatever its file is called (see isHearth).
func procPortHolder(port int) string {
	self, _ := os.Executable()
	return portHolder(port, self)
}

// portHolder is procPortHolder with self, the executable that counts as hearth.
func portHolder(port int, self string) string {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for _, ino := range listeningInodes(f, port) {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return ""
	}
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range pids {
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
				return describeProcess(dir, self)
			}
		}
	}
	return ""
}

// describeProcess names the process of /proc/PID dir: "nginx (pid 90)", or for a hearth
// "hearth (pid 812)", with its file when that is named otherwise ("hearth (pid 812,
// /usr/local/bin/hearth-dev)").
func describeProcess(dir, self string) string {
	pid := filepath.Base(dir)
	comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
	name := strings.TrimSpace(string(comm))
	exe, _ := os.Readlink(filepath.Join(dir, "exe"))
	same := false
	if self != "" {
		a, errA := os.Stat(filepath.Join(dir, "exe"))
		b, errB := os.Stat(self)
		same = errA == nil && errB == nil && os.SameFile(a, b)
	}
	if !isHearth(name, exe, same) {
		return fmt.Sprintf("%s (pid %s)", name, pid)
	}
	if exe != "" && filepath.Base(exe) != "hearth" {
		return fmt.Sprintf("hearth (pid %s, %s)", pid, exe)
	}
	return fmt.Sprintf("hearth (pid %s)", pid)
}

// isHearth tells a hearth process by its executable: the very file this doctor runs from, or
// a name starting with "hearth" (comm, the kernel's first 15 bytes of it, or exe's base) —
// a release's hearth-linux-amd64, /usr/local/bin/hearth-dev, or a binary an upgrade replaced
// ("/usr/bin/hearth (deleted)"). Matching comm == "hearth" alone called those "not hearth".
func isHearth(comm, exe string, sameAsSelf bool) bool {
	return sameAsSelf || strings.HasPrefix(comm, "hearth") || strings.HasPrefix(filepath.Base(exe), "hearth")
}

// listeningInodes reads a /proc/net/tcp table: the inodes of sockets in LISTEN (0A) on port.
func listeningInodes(path string, port int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" {
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if p, err := strconv.ParseUint(hexPort, 16, 16); !ok || err != nil || int(p) != port {
			continue
		}
		out = append(out, fields[9])
	}
	return out
}
