package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParsePool parses the --pool flag's compact form of a pool:
//
//	name=api,prefix=/api/,prefix=/v2/,host=api.example.com,max=8,queue=16,timeout=2s
//
// prefix and host may repeat; queue and timeout are optional. The result
// still goes through Validate with the rest of the configuration.
func ParsePool(s string) (Pool, error) {
	var p Pool
	if strings.TrimSpace(s) == "" {
		return p, fmt.Errorf("empty pool: use name=api,prefix=/api/,max=8[,queue=16,timeout=2s]")
	}
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return p, fmt.Errorf("pool %q: %q is not key=value (keys: name, prefix, host, max, queue, timeout)", s, part)
		}
		switch k {
		case "name":
			p.Name = v
		case "prefix":
			p.PathPrefixes = append(p.PathPrefixes, v)
		case "host":
			p.Hosts = append(p.Hosts, v)
		case "max", "queue":
			n, err := strconv.Atoi(v)
			if err != nil {
				return p, fmt.Errorf("pool %q: %s=%q is not a whole number", s, k, v)
			}
			if k == "max" {
				p.MaxConcurrent = n
			} else {
				p.Queue = n
			}
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil {
				return p, fmt.Errorf("pool %q: timeout=%q is not a duration such as 2s", s, v)
			}
			p.QueueTimeout = Duration(d)
		default:
			return p, fmt.Errorf("pool %q: unknown key %q (keys: name, prefix, host, max, queue, timeout)", s, k)
		}
	}
	if p.Name == "" {
		return p, fmt.Errorf("pool %q: name= is required", s)
	}
	return p, nil
}
