package config

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"os"
	"reflect"
)

// Warnings lists what `probe config check` points out without failing:
// risks of a valid configuration. path is the file cfg was loaded from
// ("" skips the file checks).
func Warnings(cfg *Config, path string) []string {
	var out []string
	if host, _, err := net.SplitHostPort(cfg.Listen); err == nil && !isLoopback(host) {
		out = append(out, fmt.Sprintf("listen: %s is not a loopback address: /metrics and /healthz are served without TLS or an allow-list to whoever reaches it (use 127.0.0.1 behind a proxy, or a firewall)", cfg.Listen))
	}
	if path == "" {
		return out
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o004 == 0 {
		return out
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, s := range secrets(reflect.ValueOf(cfg)) {
		if bytes.Contains(data, []byte(s)) {
			out = append(out, fmt.Sprintf("%s is mode %04o (world-readable) and holds secrets written in it: chmod 600 %s, or put them in the environment as ${VAR}",
				path, fi.Mode().Perm()&fs.ModePerm, path))
			break
		}
	}
	return out
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// secrets collects every non-empty Secret reachable from v.
func secrets(v reflect.Value) []string {
	var out []string
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			out = append(out, secrets(v.Elem())...)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				out = append(out, secrets(v.Field(i))...)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			out = append(out, secrets(v.Index(i))...)
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			out = append(out, secrets(it.Value())...)
		}
	case reflect.String:
		if v.Type() == reflect.TypeFor[Secret]() && v.Len() >= 4 {
			out = append(out, v.String())
		}
	}
	return out
}
