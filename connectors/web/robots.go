package web

import (
	"bufio"
	"bytes"
	"strings"
)

// MaxRobotsBytes is how much of a robots.txt is parsed (RFC 9309 §2.5: at
// least 500 KiB); the rest is ignored.
const MaxRobotsBytes = 500 << 10

// robots is the rule set of one host for our product token (RFC 9309).
type robots struct {
	rules    []rule
	allowAll bool
}

type rule struct {
	allow   bool
	pattern string
}

var allowAll = &robots{allowAll: true}

// parseRobots reads a robots.txt (at most MaxRobotsBytes of it) and keeps
// the rules of the groups that match token (case-insensitively), or, when
// none does, those of the "*" groups (§2.2.1). Groups that match are
// merged. Lines that do not parse are skipped (§2.2).
func parseRobots(b []byte, token string) *robots {
	if len(b) > MaxRobotsBytes {
		b = b[:MaxRobotsBytes]
	}
	token = strings.ToLower(token)
	var mine, star []rule
	var foundMine, foundStar bool
	var agents []string // the user-agent lines of the group being read
	inRules := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), MaxRobotsBytes+1)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		key = strings.ToLower(strings.TrimSpace(key))
		value = strings.TrimSpace(value)
		switch key {
		case "user-agent":
			if inRules { // a user-agent after rules starts a new group
				agents, inRules = nil, false
			}
			agents = append(agents, strings.ToLower(value))
		case "allow", "disallow":
			inRules = true
			if len(agents) == 0 {
				continue // a rule outside any group
			}
			r := rule{allow: key == "allow", pattern: canonical(value)}
			for _, a := range agents {
				switch {
				case a == token:
					foundMine = true
					if value != "" {
						mine = append(mine, r)
					}
				case a == "*":
					foundStar = true
					if value != "" {
						star = append(star, r)
					}
				}
			}
			// An empty disallow allows everything: no rule to keep,
			// but the group still counts as found.
		}
	}
	switch {
	case foundMine:
		return &robots{rules: mine}
	case foundStar:
		return &robots{rules: star}
	}
	return allowAll
}

// allowed reports whether path (the URL's escaped path and query) may be
// fetched: the longest matching rule decides, allow winning a tie
// (§2.2.2); /robots.txt is always allowed.
func (r *robots) allowed(path string) bool {
	switch {
	case r.allowAll, path == "/robots.txt":
		return true
	}
	path = canonical(path)
	best, allow := -1, true
	for _, ru := range r.rules {
		if !match(ru.pattern, path) {
			continue
		}
		n := len(ru.pattern)
		if n > best || n == best && ru.allow {
			best, allow = n, ru.allow
		}
	}
	return allow
}

// match reports whether a robots.txt pattern matches path: a prefix match,
// where "*" matches any run of characters and a final "$" anchors the end.
func match(pattern, path string) bool {
	anchored := strings.HasSuffix(pattern, "$")
	if anchored {
		pattern = pattern[:len(pattern)-1]
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(path, parts[0]) {
		return false
	}
	rest := path[len(parts[0]):]
	if len(parts) == 1 {
		return !anchored || rest == ""
	}
	for i, p := range parts[1:] {
		last := i == len(parts)-2
		if last && anchored {
			return strings.HasSuffix(rest, p)
		}
		j := strings.Index(rest, p)
		if j < 0 {
			return false
		}
		rest = rest[j+len(p):]
	}
	return true
}

// canonical puts a path or pattern in one percent-encoded form (§2.2.2):
// octets outside printable ASCII (UTF-8 in a pattern) encoded, escapes of
// unreserved characters decoded, hex digits upper case. "*" and "$" stay.
func canonical(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			v := unhex(s[i+1])<<4 | unhex(s[i+2])
			if isUnreserved(v) {
				b.WriteByte(v)
			} else {
				b.WriteByte('%')
				b.WriteByte(hex[v>>4])
				b.WriteByte(hex[v&15])
			}
			i += 2
		case c <= 0x20 || c >= 0x7f:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
