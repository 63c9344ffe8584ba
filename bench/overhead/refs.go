package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A reference is another proxy in front of the same backend, measured in the same run so the
// agent's figures have something to be judged against besides the direct call.
type reference struct {
	url  string
	cpu  func() time.Duration // CPU spent outside this process so far (nil: none)
	stop func()
}

// startGoProxy starts the smallest reverse proxy Go's standard library makes
// (httputil.ReverseProxy, flushing every write), in this process: the floor of a net/http
// proxy, which is what the agent is built on.
func startGoProxy(backend string) (*reference, error) {
	target, err := url.Parse(backend)
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	rp.Transport = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, DisableCompression: true}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	return &reference{url: "http://" + ln.Addr().String(), stop: func() { srv.Close() }}, nil
}

// nginxPath finds nginx on PATH or where Debian puts it; "" when it is not installed.
func nginxPath() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	return ""
}

const nginxConf = `worker_processes 2;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream backend { server %[2]s; keepalive 256; }
  server {
    listen 127.0.0.1:%[3]d;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
`

// startNginx runs nginx as a reverse proxy in front of backend (keep-alive upstream
// connections, no buffering, as one would put it in front of Ollama), with its CPU read from
// /proc. It returns nil, nil when nginx is not installed.
func startNginx(ctx context.Context, backend string) (*reference, error) {
	bin := nginxPath()
	if bin == "" {
		return nil, nil
	}
	u, err := url.Parse(backend)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hearth-bench-nginx-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, u.Host, port), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-p", dir, "-c", conf)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	ref := &reference{
		url: fmt.Sprintf("http://127.0.0.1:%d", port),
		cpu: func() time.Duration { return treeCPU(cmd.Process.Pid) },
		stop: func() {
			cmd.Process.Signal(os.Interrupt) //nolint:errcheck // SIGINT: nginx exits at once
			cmd.Wait()                       //nolint:errcheck // we asked it to stop
			os.RemoveAll(dir)
		},
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return ref, nil
		}
		if time.Now().After(deadline) {
			ref.stop()
			return nil, errors.New("nginx did not start listening within 10s (see its messages above)")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// treeCPU is the user+system CPU of pid and its children (nginx's master and workers), read
// from /proc in clock ticks of 10 ms: over runs of seconds that is fine enough.
func treeCPU(pid int) time.Duration {
	var total time.Duration
	self := strconv.Itoa(pid)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if f := statFields(stat); len(f) > 12 && (e.Name() == self || f[1] == self) {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			total += time.Duration(ut+st) * 10 * time.Millisecond
		}
	}
	return total
}

// statFields are the fields of /proc/PID/stat after the command name (which may hold
// spaces): [0] is the state, [1] the parent pid, [11] utime, [12] stime.
func statFields(stat []byte) []string {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}
