// Package safehttp guards every HTTP request Apiary makes on a user's behalf
// (webhook deliveries, URL sources) against server-side request forgery.
//
// Two checks, one policy:
//   - CheckURL, when a URL is accepted (webhook creation): only http and
//     https, no credentials in the URL, and a host that is not a forbidden
//     address literal in any form a resolver accepts (127.0.0.1, [::1],
//     0x7f000001, 2130706433, 0177.0.0.1, 127.1) nor a localhost name.
//   - NewClient's dialer, on every connection: the address the name resolved
//     to is checked in net.Dialer.Control, after resolution and before
//     connect, so a name that resolves (or is rebound) to a private address
//     never reaches it. The client follows no redirects and uses no proxy.
//
// Refused always: unspecified and "this network" (0.0.0.0/8, ::), multicast,
// broadcast, reserved 240.0.0.0/4, and the cloud metadata addresses
// 169.254.169.254 and fd00:ec2::254. Refused unless allowPrivate: loopback,
// private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local
// (169.254/16, fe80::/10), shared CGNAT 100.64/10, 192.0.0.0/24,
// benchmarking 198.18/15, IPv4-mapped IPv6 (::ffff:0:0/96), and NAT64 or
// 6to4 addresses that embed a refused IPv4 address.
package safehttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/apiaryhq/apiary"
)

// ErrForbiddenAddress is matched (errors.Is) by every refusal of an address.
var ErrForbiddenAddress = errors.New("safehttp: forbidden address")

// forbiddenError says which address was refused and why; it is of kind
// Invalid so that the API answers 400 and workers never retry it.
type forbiddenError struct {
	addr, why string
}

func (e *forbiddenError) Error() string {
	return fmt.Sprintf("safehttp: address %s is refused: %s", e.addr, e.why)
}

func (e *forbiddenError) Is(target error) bool { return target == ErrForbiddenAddress }

// Unwrap classifies the refusal as apiary.KindInvalid.
func (e *forbiddenError) Unwrap() error { return apiary.E(apiary.KindInvalid, "%s", e.Error()) }

func forbidden(addr, why string) error { return &forbiddenError{addr: addr, why: why} }

var (
	metadataV4 = netip.MustParseAddr("169.254.169.254")
	metadataV6 = netip.MustParseAddr("fd00:ec2::254")

	alwaysRefused = []struct {
		p   netip.Prefix
		why string
	}{
		{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" (0.0.0.0/8)"},
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240.0.0.0/4, incl. broadcast)"},
	}
	privateRanges = []struct {
		p   netip.Prefix
		why string
	}{
		{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT 100.64.0.0/10)"},
		{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments (192.0.0.0/24)"},
		{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking (198.18.0.0/15)"},
	}
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4 = netip.MustParsePrefix("2002::/16")
)

// CheckIP reports why ip may not be the target of a request made on a
// user's behalf, or nil when it may. allowPrivate permits private, loopback
// and link-local targets (self-hosted installs, tests), never the cloud
// metadata addresses, unspecified, multicast or reserved ones.
func CheckIP(ip netip.Addr, allowPrivate bool) error {
	s := ip.String()
	ip = ip.WithZone("")
	switch {
	case !ip.IsValid():
		return forbidden(s, "not an IP address")
	case ip == metadataV4 || ip == metadataV6:
		return forbidden(s, "cloud metadata service")
	case ip.IsUnspecified():
		return forbidden(s, "unspecified address")
	case ip.IsMulticast():
		return forbidden(s, "multicast")
	}
	if ip.Is4In6() {
		if err := CheckIP(ip.Unmap(), allowPrivate); err != nil {
			return forbidden(s, "IPv4-mapped IPv6 of a refused address")
		}
		if !allowPrivate {
			return forbidden(s, "IPv4-mapped IPv6 address")
		}
		return nil
	}
	for _, r := range alwaysRefused {
		if r.p.Contains(ip) {
			return forbidden(s, r.why)
		}
	}
	// NAT64 and 6to4 addresses carry an IPv4 address that a gateway would reach.
	if nat64.Contains(ip) {
		b := ip.As16()
		if err := CheckIP(netip.AddrFrom4([4]byte(b[12:16])), allowPrivate); err != nil {
			return forbidden(s, "NAT64 address of a refused IPv4 address")
		}
	}
	if sixTo4.Contains(ip) {
		b := ip.As16()
		if err := CheckIP(netip.AddrFrom4([4]byte(b[2:6])), allowPrivate); err != nil {
			return forbidden(s, "6to4 address of a refused IPv4 address")
		}
	}
	if allowPrivate {
		return nil
	}
	switch {
	case ip.IsLoopback():
		return forbidden(s, "loopback")
	case ip.IsPrivate():
		return forbidden(s, "private network")
	case ip.IsLinkLocalUnicast():
		return forbidden(s, "link-local")
	}
	for _, r := range privateRanges {
		if r.p.Contains(ip) {
			return forbidden(s, r.why)
		}
	}
	return nil
}

// CheckURL reports whether raw may be called on a user's behalf: an
// absolute http or https URL without user info, whose host is not a refused
// address literal (in any form inet_aton accepts) nor a localhost name. A
// host name that passes may still resolve to a refused address: the client
// from NewClient checks that at dial time.
func CheckURL(raw string, allowPrivate bool) error {
	if len(raw) > 2048 {
		return apiary.E(apiary.KindInvalid, "the URL is longer than 2048 bytes")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return apiary.E(apiary.KindInvalid, "the URL does not parse")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return apiary.E(apiary.KindInvalid, "the URL must start with https:// or http://")
	case u.Opaque != "" || u.Host == "":
		return apiary.E(apiary.KindInvalid, "the URL must be absolute, like https://example.com/hook")
	case u.User != nil:
		return apiary.E(apiary.KindInvalid, "the URL must not hold a user name or password")
	}
	host := u.Hostname()
	if host == "" {
		return apiary.E(apiary.KindInvalid, "the URL has no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return apiary.E(apiary.KindInvalid, "the URL's port must be 1 to 65535")
		}
	}
	if ip, ok := ParseHost(host); ok {
		if err := CheckIP(ip, allowPrivate); err != nil {
			return apiary.Wrap(err, apiary.KindInvalid, "the URL's host is refused: %s", reason(err))
		}
		return nil
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if !allowPrivate && (name == "localhost" || strings.HasSuffix(name, ".localhost")) {
		return apiary.E(apiary.KindInvalid, "the URL's host is refused: %s is a loopback name", host)
	}
	return nil
}

func reason(err error) string {
	var fe *forbiddenError
	if errors.As(err, &fe) {
		return fe.addr + " is " + fe.why
	}
	return "forbidden address"
}

// ParseHost parses host as an IP address the way a resolver would: an IPv6
// literal (with or without brackets or zone), or an IPv4 address in any
// inet_aton form: 1 to 4 parts, each decimal, octal (leading 0) or hex
// (0x), the last part filling the remaining bytes (127.1, 2130706433,
// 0x7f000001, 0177.0.0.1). ok is false when host is a name.
func ParseHost(host string) (ip netip.Addr, ok bool) {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip, true
	}
	host = strings.TrimSuffix(host, ".")
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		v, ok := parseAtonPart(p)
		if !ok {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	last := len(vals) - 1
	for i := 0; i < last; i++ {
		if vals[i] > 0xff {
			return netip.Addr{}, false
		}
		n |= vals[i] << (8 * (3 - i))
	}
	if vals[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	n |= vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

func parseAtonPart(p string) (uint64, bool) {
	if p == "" {
		return 0, false
	}
	base, digits := 10, p
	switch {
	case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
		base, digits = 16, p[2:]
		if digits == "" {
			return 0, true // "0x" alone is 0 to inet_aton
		}
	case len(p) > 1 && p[0] == '0':
		base, digits = 8, p[1:]
	}
	v, err := strconv.ParseUint(digits, base, 32)
	if err != nil {
		return 0, false
	}
	return v, true
}

// errDialRefused is Control's refusal. Its caller-safe message names neither
// the address a host name resolved to nor why that address is refused: a
// delivery error that did would answer questions about internal DNS.
var errDialRefused = apiary.Wrap(ErrForbiddenAddress, apiary.KindInvalid, "the address is refused")

// Control is a net.Dialer.Control that refuses to connect to a refused
// address. It runs after name resolution, on the very address about to be
// connected, so DNS rebinding cannot slip past it. Its error says only that
// the address is refused (errors.Is ErrForbiddenAddress, kind Invalid).
func Control(allowPrivate bool) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || CheckIP(ap.Addr(), allowPrivate) != nil {
			return errDialRefused
		}
		return nil
	}
}

// Config configures NewClient.
type Config struct {
	// AllowPrivate permits private, loopback and link-local targets (the
	// --allow-private-webhooks setting). Default false.
	AllowPrivate bool
	// Timeout bounds a whole request, body included. Default 15 s.
	Timeout time.Duration
	// Resolver resolves host names; default net.DefaultResolver. Tests set
	// one that answers with chosen addresses.
	Resolver *net.Resolver
	// LookupHost, when set, replaces name resolution (tests point a public
	// looking name at a private address with it). Default: Resolver.
	LookupHost func(ctx context.Context, host string) ([]string, error)
}

func (c *Config) setDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = 15 * time.Second
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
}

// NewClient returns an HTTP client whose every connection goes through
// Control, that follows no redirect (a 3xx is returned as the response),
// ignores proxy variables and gives up after cfg.Timeout.
func NewClient(cfg Config) *http.Client {
	cfg.setDefaults()
	dialer := &net.Dialer{
		Timeout:   cfg.Timeout,
		KeepAlive: 30 * time.Second,
		Resolver:  cfg.Resolver,
		Control:   Control(cfg.AllowPrivate),
	}
	// Numeric hosts in any inet_aton form are dialed as the address they
	// mean (no DNS query for them); names go through LookupHost when set.
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if ip, ok := ParseHost(host); ok {
			return dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		}
		if cfg.LookupHost == nil {
			return dialer.DialContext(ctx, network, addr)
		}
		addrs, err := cfg.LookupHost(ctx, host)
		if err != nil {
			return nil, err
		}
		var errs []error
		for _, a := range addrs {
			c, err := dialer.DialContext(ctx, network, net.JoinHostPort(a, port))
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would make the dial check moot
		DialContext:           dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
