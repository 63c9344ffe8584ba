package config

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ReadEnvFile reads the VAR=value lines of an environment file in systemd's EnvironmentFile
// and docker compose's env_file format: blank lines and lines starting with # are skipped,
// a value may be wrapped in single or double quotes. It is where `hearth init` keeps secrets
// that relay.yaml and agent.yaml name as ${VAR}.
func ReadEnvFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		key = strings.TrimSpace(key)
		if !ok || !envNameRe.MatchString(key) {
			return nil, fmt.Errorf("%s:%d: not VAR=value (names are letters, digits and _)", path, n)
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
			val = val[1 : len(val)-1]
		}
		env[key] = val
	}
	return env, sc.Err()
}

// EnvLookup looks a variable up in env first and then in the process environment, the way
// systemd's EnvironmentFile fills the service's environment.
func EnvLookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		if v, ok := env[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	}
}

// LoadRelayWith reads a relay config file over the defaults and validates it, with ${VAR}
// looked up by lookup: LoadRelay passes os.LookupEnv, `hearth init` the env file it wrote.
func LoadRelayWith(path string, lookup func(string) (string, bool)) (Relay, error) {
	return loadWith(path, DefaultRelay(), lookup)
}

// LoadAgentWith reads an agent config file over the defaults and validates it, with ${VAR}
// looked up by lookup: LoadAgent passes os.LookupEnv, `hearth init` the env file it wrote.
func LoadAgentWith(path string, lookup func(string) (string, bool)) (Agent, error) {
	return loadWith(path, DefaultAgent(), lookup)
}

// loadWith is every role's load: the file over cfg's defaults, list defaults, validation.
func loadWith[T any, P interface {
	*T
	Complete()
	Validate() error
}](path string, cfg T, lookup func(string) (string, bool)) (T, error) {
	if err := decodeFile(path, &cfg, lookup); err != nil {
		return cfg, err
	}
	P(&cfg).Complete()
	if err := P(&cfg).Validate(); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// UnsetVars lists the ${VAR}s in the values of the config file at path that lookup does not
// find, in the order the loaders would report them: what an env file must still supply. None
// when the file cannot be read or parsed (loading it says why).
func UnsetVars(path string, lookup func(string) (string, bool)) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil
	}
	var unset []string
	var problems Errors
	expandEnv(path, &doc, func(k string) (string, bool) {
		v, ok := lookup(k)
		if !ok {
			unset = append(unset, k)
		}
		return v, ok
	}, &problems)
	return unset
}
