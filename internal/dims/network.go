package dims

import (
	"net/netip"
	"strings"
)

// AppendClientNetwork writes the network a client address belongs to: its
// /24 for IPv4 and /48 for IPv6 (the usual allocation to one site), where a
// crawler farm or one customer's NAT shows up even when each address alone
// is small. Text that is not an address (a unix socket, a hostname) is kept
// as it is, truncated; no client at all is None.
func AppendClientNetwork(dst []byte, client string) []byte {
	if client == "" || client == "-" {
		return append(dst, None...)
	}
	if i := dottedQuad(client); i > 0 {
		// IPv4, the common case: no parsing into netip, no allocation.
		dst = append(dst, client[:i]...)
		return append(dst, ".0/24"...)
	}
	a, err := netip.ParseAddr(client)
	if err != nil {
		return append(dst, Truncate(client)...)
	}
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p.AppendTo(dst)
}

// dottedQuad returns the index of the last dot when s is an IPv4 address as
// netip.ParseAddr accepts it (four decimal octets up to 255, no leading
// zeros), else 0.
func dottedQuad(s string) int {
	if len(s) < 7 || len(s) > 15 || strings.IndexByte(s, ':') >= 0 {
		return 0
	}
	octets, last := 0, 0
	for i := 0; i <= len(s); {
		j := i
		v := 0
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			v = v*10 + int(s[j]-'0')
			j++
		}
		n := j - i
		if n == 0 || n > 3 || v > 255 || n > 1 && s[i] == '0' {
			return 0
		}
		octets++
		if j == len(s) {
			break
		}
		if s[j] != '.' || octets == 4 {
			return 0
		}
		last = j
		i = j + 1
	}
	if octets != 4 {
		return 0
	}
	return last
}
