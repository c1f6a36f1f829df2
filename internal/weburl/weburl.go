// Package weburl parses the http:// and https:// URLs people type on the
// command line and in config files (an upstream, a load-test target), and
// says what to write instead when one is not such a URL.
//
// Issue 17: "127.0.0.1:8000" gave Go's "first path segment in URL cannot
// contain colon", and "localhost:8000" parsed as the scheme "localhost",
// in both headroom proxy and headroom load.
package weburl

import (
	"fmt"
	"net/url"
	"strings"
)

// Parse returns raw as a URL if it is an absolute http:// or https:// URL
// with a host. Its errors quote raw and suggest the URL meant.
func Parse(raw string) (*url.URL, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return nil, fmt.Errorf("empty URL: write one like http://127.0.0.1:8000")
	}
	if !strings.Contains(s, "://") {
		return nil, fmt.Errorf("%q has no scheme: write http://%s (or https:// for TLS)", raw, strings.TrimLeft(s, "/:"))
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %w", raw, unwrap(err))
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	default:
		return nil, fmt.Errorf("%q: the scheme must be http:// or https://, not %s://", raw, u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%q has no host: write one like http://127.0.0.1:8000", raw)
	}
	return u, nil
}

// unwrap drops url.Error's repetition of the operation and the URL, which
// the caller's message already quotes.
func unwrap(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
