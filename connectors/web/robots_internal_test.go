package web

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRobots(t *testing.T) {
	t.Parallel()
	const txt = `# comment
User-agent: OtherBot
Disallow: /

User-Agent: ApiaryBot  # our group, with a second agent
user-agent: friend
Disallow: /private
Allow: /private/public
Disallow: /*.pdf$
Allow: /docs/
Disallow: /docs/draft*
Disallow: /same
Allow: /same

User-agent: *
Disallow: /everything-for-others

User-agent: apiarybot
Disallow: /merged
`
	r := parseRobots([]byte(txt), "apiarybot")
	tests := []struct {
		path string
		want bool
	}{
		{"/", true},
		{"/private", false},
		{"/private/x", false},
		{"/private/public/x", true}, // the longer allow wins
		{"/file.pdf", false},        // * and $
		{"/file.pdf?x=1", true},     // $ anchors the end
		{"/docs/a", true},
		{"/docs/draft-1", false},         // longer disallow with *
		{"/same", true},                  // a tie: allow wins
		{"/merged/a", false},             // groups naming us are merged
		{"/everything-for-others", true}, // the * group is not ours
		{"/robots.txt", true},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, r.allowed(tt.path), tt.path)
	}

	// No group names us: the * groups apply; none at all: allow all.
	star := parseRobots([]byte(txt), "somebot")
	require.False(t, star.allowed("/everything-for-others"))
	require.True(t, star.allowed("/private"))
	require.True(t, parseRobots([]byte("User-agent: x\nDisallow: /\n"), "apiarybot").allowed("/a"))
	// An empty Disallow allows everything.
	require.True(t, parseRobots([]byte("User-agent: *\nDisallow:\n"), "apiarybot").allowed("/a"))

	// Paths and patterns compare in one percent-encoded form.
	enc := parseRobots([]byte("User-agent: *\nDisallow: /caf\u00e9\nDisallow: /%7euser\nDisallow: /a%2fb\n"), "apiarybot")
	require.False(t, enc.allowed("/caf%C3%A9/menu"), "a UTF-8 pattern matches its encoded path")
	require.False(t, enc.allowed("/caf%c3%a9"), "hex case does not matter")
	require.False(t, enc.allowed("/~user/x"), "an escaped unreserved character is the character")
	require.False(t, enc.allowed("/a%2Fb"))
	require.True(t, enc.allowed("/a/b"), "an escaped slash is not a slash")

	// Only the first 500 KiB are read: a rule past them does not apply.
	long := "User-agent: *\n" + strings.Repeat("# padding\n", MaxRobotsBytes/10) + "Disallow: /late\n"
	require.True(t, parseRobots([]byte(long), "apiarybot").allowed("/late"))
}

func FuzzRobots(f *testing.F) {
	f.Add([]byte("User-agent: *\nDisallow: /a*b$\nAllow: /a\n"), "/a/b")
	f.Fuzz(func(t *testing.T, b []byte, path string) {
		parseRobots(b, "apiarybot").allowed(path)
	})
}

func FuzzSitemap(f *testing.F) {
	f.Add([]byte(`<urlset><url><loc>/a</loc><lastmod>2025-01-01</lastmod></url></urlset>`))
	f.Add([]byte(`<sitemapindex><sitemap><loc>/s.xml</loc></sitemap></sitemapindex>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		_, _ = parseSitemap(bytes.NewReader(b), 1<<16, func(e entry, _ bool) bool {
			if e.loc == "" || len(e.loc) > maxURLLen {
				t.Fatalf("entry with loc %q", e.loc)
			}
			n++
			return n < 1000
		})
	})
}
