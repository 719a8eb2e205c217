package confluence_test

import (
	"context"
	"flag"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/confluence"
	"github.com/apiaryhq/apiary/connectors/rest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func listIDs(t *testing.T, c connectors.Connector, src connectors.Source) []string {
	t.Helper()
	var ids []string
	for it, err := range connectors.All(ctx(t), c, src, "") {
		require.NoError(t, err)
		ids = append(ids, it.ID)
	}
	return ids
}

// A realistic page (a layout, macros, panels, nested lists, a task list, a
// table with a colspan, CDATA with entities and a split "]]>") renders as
// the Markdown in testdata.
func TestStorageToMarkdownGolden(t *testing.T) {
	t.Parallel()
	in, err := os.ReadFile(filepath.Join("testdata", "runbook.xhtml"))
	require.NoError(t, err)
	got := confluence.StorageToMarkdown(string(in))
	golden := filepath.Join("testdata", "runbook.md")
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("storage → Markdown differs from %s (-want +got):\n%s", golden, d)
	}
}

func TestStorageToMarkdown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", ""},
		{"text only", "plain &amp; simple", "plain & simple\n"},
		{"escapes", "<p>a *b* [c] `d` \\ snake_case</p>", "a \\*b\\* \\[c\\] \\`d\\` \\\\ snake_case\n"},
		{"line starts", "<p># not a heading</p><p>- not an item</p><p>2) not either</p>", "\\# not a heading\n\n\\- not an item\n\n2\\) not either\n"},
		{"unclosed", "<p>one<p>two<ul><li>a<li>b", "one\n\ntwo\n\n- a\n- b\n"},
		{"stray end tags", "</div><p>kept</span></p>", "kept\n"},
		{"cdata is literal", `<ac:structured-macro ac:name="code"><ac:plain-text-body><![CDATA[a &lt; b]]></ac:plain-text-body></ac:structured-macro>`, "```\na &lt; b\n```\n"},
		{"user link", `<p>ask <ac:link><ri:user ri:account-id="557058:aa11" /></ac:link>!</p>`, "ask !\n"},
		{"attachment link", `<p><ac:link><ri:attachment ri:filename="spec.pdf" /></ac:link></p>`, "spec.pdf\n"},
		{"heading with emphasis", "<h4>The <em>real</em> one</h4>", "#### The *real* one\n"},
		{"bold spaces", "<p>a<strong> b </strong>c</p>", "a **b** c\n"},
		{"img alt", `<p><img src="x.png" alt="A chart" /></p>`, "A chart\n"},
		{"relative link", `<p><a href="/wiki/x">here</a></p>`, "here\n"},
		{"ordered start", `<ol start="3"><li>c</li><li>d</li></ol>`, "3. c\n4. d\n"},
		{"quote", "<blockquote><p>said</p><p>twice</p></blockquote>", "> said\n>\n> twice\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, confluence.StorageToMarkdown(tc.in))
		})
	}
}

func FuzzStorageToMarkdown(f *testing.F) {
	in, err := os.ReadFile(filepath.Join("testdata", "runbook.xhtml"))
	require.NoError(f, err)
	f.Add(string(in))
	f.Add("<ul><li><ol><li><table><tr><td><ul><li>x")
	f.Add("<![CDATA[unterminated")
	f.Fuzz(func(t *testing.T, s string) {
		out := confluence.StorageToMarkdown(s)
		if utf8.ValidString(s) && !utf8.ValidString(out) {
			t.Fatalf("valid UTF-8 in, invalid out: %q", out)
		}
	})
}

// A deeply nested page renders without exhausting the stack, and its
// indentation does not multiply its size.
func TestStorageToMarkdownDeep(t *testing.T) {
	t.Parallel()
	s := strings.Repeat("<ul><li>x", 20_000)
	out := confluence.StorageToMarkdown(s)
	require.Equal(t, 20_000, strings.Count(out, "x"))
	require.Less(t, len(out), 8*len(s))
}

func TestOpenRendersMarkdown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	in, err := os.ReadFile(filepath.Join("testdata", "runbook.xhtml"))
	require.NoError(t, err)
	id := h.f.put("ENG", "Deploy runbook", string(in))
	h.f.put("ENG", "Deploy runbook", string(in)) // version 2

	items := listItems(t, h.Connector(), connectors.Source{})
	require.Len(t, items, 1)
	it := items[0]
	require.Equal(t, id, it.ID)
	require.Equal(t, "Deploy runbook.md", it.Name)
	require.Equal(t, "2", it.Version)
	require.Equal(t, time.Date(2026, 11, 30, 9, 10, 0, 0, time.UTC), it.Modified.UTC())

	c, err := h.Connector().Open(ctx(t), it)
	require.NoError(t, err)
	body, err := io.ReadAll(c.Body)
	require.NoError(t, err)
	require.NoError(t, c.Body.Close())
	require.Equal(t, "text/markdown; charset=utf-8", c.ContentType)
	require.Equal(t, "2", c.Version)
	require.Equal(t, confluence.StorageToMarkdown(string(in)), string(body))

	_, err = h.Connector().Open(ctx(t), connectors.Item{ID: id, Seen: "2"})
	require.ErrorIs(t, err, connectors.ErrNotModified, "the version seen is the version fetched")
	c, err = h.Connector().Open(ctx(t), connectors.Item{ID: id, Seen: "1"})
	require.NoError(t, err, "a page changed since the version seen")
	require.NoError(t, c.Body.Close())
	// The listing asked for no body; Open asked for the storage format.
	require.Contains(t, h.f.requests, "GET /wiki/api/v2/pages/"+id)
}

func listItems(t *testing.T, c connectors.Connector, src connectors.Source) []connectors.Item {
	t.Helper()
	var items []connectors.Item
	for it, err := range connectors.All(ctx(t), c, src, "") {
		require.NoError(t, err)
		items = append(items, it)
	}
	return items
}

// "space:KEY" resolves the key to the space's id once, lists that space's
// pages only, and an unknown key is gone.
func TestSpaceKeyResolution(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	eng := h.f.putN("ENG", "eng", 2*pageSize+1)
	ops := h.f.put("OPS", "ops page", "<p>y</p>")

	h.f.requests = nil
	require.Equal(t, eng, listIDs(t, h.Connector(), connectors.Source{Location: "space:ENG"}))
	require.Equal(t, []string{ops}, listIDs(t, h.Connector(), connectors.Source{Location: "space:OPS"}))
	require.Equal(t, append(slices.Clone(eng), ops), listIDs(t, h.Connector(), connectors.Source{Location: "all"}))

	spaces := 0
	for _, r := range h.f.requests {
		if r == "GET /wiki/api/v2/spaces" {
			spaces++
		}
	}
	require.Equal(t, 2, spaces, "a space key is resolved once per listing, not per page: %v", h.f.requests)
	require.Contains(t, h.f.requests, "GET /wiki/api/v2/spaces/98305/pages")

	_, err := h.Connector().List(ctx(t), connectors.Source{Location: "space:NOPE"}, "")
	require.ErrorIs(t, err, connectors.ErrGone)

	for _, bad := range []string{"space:", "space:a b", "space:\"x\"", "ENG", "page:1"} {
		_, err := h.Connector().List(ctx(t), connectors.Source{Location: bad}, "")
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "source %q", bad)
	}
}

// A listing follows the cursor of the Link header, or of _links.next when
// there is no Link header; a link to another origin is refused.
func TestLinkHeaderPagination(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		noLink, noNext bool
	}{{"both", false, false}, {"link header only", false, true}, {"body only", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "")
			want := h.f.putN("ENG", "p", 3*pageSize-1)
			h.f.noLink, h.f.noNext = tc.noLink, tc.noNext
			pages := 0
			var got []string
			var cur connectors.Cursor
			for {
				page, err := h.Connector().List(ctx(t), connectors.Source{}, cur)
				require.NoError(t, err)
				pages++
				for _, it := range page.Items {
					got = append(got, it.ID)
				}
				if cur = page.Next; cur == "" {
					break
				}
			}
			require.Equal(t, want, got)
			require.Equal(t, 3, pages)
		})
	}

	h := newHarness(t, "")
	h.f.putN("ENG", "p", pageSize+1)
	h.f.foreign = true
	_, err := h.Connector().List(ctx(t), connectors.Source{}, "")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	require.NotContains(t, err.Error(), "elsewhere.example")
}

// MaxItems caps the listing; a cursor of another source is invalid.
func TestListCapAndForeignCursor(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	h.f.putN("ENG", "p", 2*pageSize)
	require.Len(t, listIDs(t, h.Connector(), connectors.Source{MaxItems: pageSize + 1}), pageSize+1)

	first, err := h.Connector().List(ctx(t), connectors.Source{}, "")
	require.NoError(t, err)
	require.NotEmpty(t, first.Next)
	_, err = h.Connector().List(ctx(t), connectors.Source{Location: "space:ENG"}, first.Next)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	_, err = h.Connector().List(ctx(t), connectors.Source{}, "not a cursor")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

// The change query is exactly the documented CQL: the token's time less
// the overlap, floored to the minute, written in the site's zone (or 12
// hours earlier in UTC when the zone is unknown).
func TestChangeQueryShape(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	h.f.put("ENG", "a", "<p>a</p>") // 09:05 UTC
	h.f.clock = h.f.clock.Add(37 * time.Second)
	for _, tc := range []struct {
		name string
		zone *time.Location
		src  string
		want string
	}{
		{"unknown zone", nil, "", `type=page AND lastmodified>="2026/11/29 21:04" ORDER BY lastmodified`},
		{"site zone", h.f.zone, "", `type=page AND lastmodified>="2026/11/30 01:04" ORDER BY lastmodified`},
		{"space", h.f.zone, "space:ENG", `type=page AND space="ENG" AND lastmodified>="2026/11/30 01:04" ORDER BY lastmodified`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.conn(t, confluence.Config{SiteTimeZone: tc.zone})
			src := connectors.Source{Location: tc.src}
			tok, err := c.StartToken(ctx(t), src)
			require.NoError(t, err)
			h.f.mu.Lock()
			h.f.cql = nil
			h.f.mu.Unlock()
			_, err = c.Changes(ctx(t), src, tok)
			require.NoError(t, err)
			h.f.mu.Lock()
			defer h.f.mu.Unlock()
			require.Equal(t, []string{tc.want}, h.f.cql)
		})
	}
}

// CQL reads dates in the site's zone: a connector that wrote them in UTC
// for a site at UTC-8 would miss the last eight hours of changes. With the
// zone unknown, the widened window and the exact version times find them.
func TestChangesAcrossTheSiteZone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	h.f.put("ENG", "before", "<p>a</p>")
	for _, tc := range []struct {
		name  string
		zone  *time.Location
		found bool
	}{{"wrong zone", time.UTC, false}, {"unknown zone", nil, true}, {"site zone", h.f.zone, true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.conn(t, confluence.Config{SiteTimeZone: tc.zone})
			tok, err := c.StartToken(ctx(t), connectors.Source{})
			require.NoError(t, err)
			id := h.f.put("ENG", "edited "+tc.name, "<p>b</p>")
			changed, _ := runChanges(t, c, connectors.Source{}, tok)
			require.Equal(t, tc.found, changed[id])
			require.False(t, changed[listIDs(t, c, connectors.Source{})[0]], "the page before the token is not listed")
		})
	}
}

// runChanges runs a change feed to its end and returns what changed and
// what was removed, and the next token.
func runChanges(t *testing.T, c *confluence.Connector, src connectors.Source, tok connectors.Cursor) (changed, removed map[string]bool) {
	t.Helper()
	changed, removed = map[string]bool{}, map[string]bool{}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000)
		ch, err := c.Changes(ctx(t), src, tok)
		require.NoError(t, err)
		for _, it := range ch.Items {
			changed[it.ID] = true
		}
		for _, id := range ch.Removed {
			removed[id] = true
		}
		if ch.Next == "" {
			require.NotEmpty(t, ch.Token)
			return changed, removed
		}
		tok = ch.Next
	}
}

// A page moved to the trash (no new version) or archived after the token
// is removed, not changed; a page of another space is neither; CQL is
// paged by its cursor.
func TestTrashedPageRemovedInChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	trash := h.f.put("ENG", "to trash", "<p>a</p>")
	archive := h.f.put("ENG", "to archive", "<p>b</p>")
	other := h.f.put("OPS", "other space", "<p>c</p>")
	c := h.conn(t, confluence.Config{PageSize: 2})
	src := connectors.Source{Location: "space:ENG"}
	tok, err := c.StartToken(ctx(t), src)
	require.NoError(t, err)

	edited := h.f.putN("ENG", "edited", 5)
	h.f.setStatus(trash, "trashed")
	h.f.setStatus(archive, "archived")
	h.f.setStatus(other, "trashed")

	changed, removed := runChanges(t, c, src, tok)
	for _, id := range edited {
		require.True(t, changed[id], "edited page %s", id)
	}
	require.Len(t, changed, len(edited))
	require.Equal(t, map[string]bool{trash: true, archive: true}, removed)
	require.Greater(t, len(h.f.cql), 2, "the search is paged")

	// A picked source hears only of its own pages.
	picked := connectors.Source{Location: "space:ENG", Items: []string{edited[1], trash}}
	tok, err = c.StartToken(ctx(t), picked)
	require.NoError(t, err)
	h.f.putN("ENG", "edited", 2)
	changed, removed = runChanges(t, c, picked, tok)
	require.Equal(t, map[string]bool{edited[1]: true}, changed)
	require.Equal(t, map[string]bool{trash: true}, removed)
}

// Without a Date header the token is the newest version's time, and a run
// keeps its token's time (the next sync lists the same changes again).
func TestChangesWithoutDate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	h.f.put("ENG", "old", "<p>a</p>")
	h.f.noDate = true
	c := h.conn(t, confluence.Config{SiteTimeZone: h.f.zone})
	tok, err := c.StartToken(ctx(t), connectors.Source{})
	require.NoError(t, err)
	id := h.f.put("ENG", "new", "<p>b</p>")
	changed, _ := runChanges(t, c, connectors.Source{}, tok)
	require.True(t, changed[id], "a page changed after the token")

	var last connectors.Changes
	for cur := tok; ; {
		last, err = c.Changes(ctx(t), connectors.Source{}, cur)
		require.NoError(t, err)
		if last.Next == "" {
			break
		}
		cur = last.Next
	}
	changed, _ = runChanges(t, c, connectors.Source{}, last.Token)
	require.True(t, changed[id], "a run without server time does not move the token")

	h.f.mu.Lock()
	h.f.pages = map[string]*fakePage{}
	h.f.mu.Unlock()
	_, err = c.StartToken(ctx(t), connectors.Source{})
	require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "no time at all")
}

// A change token of another source, or garbage, is invalid; a CQL query
// Confluence refuses is invalid and its message is not quoted.
func TestChangeTokenErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	c := h.conn(t, confluence.Config{})
	h.f.put("ENG", "a", "<p>a</p>")
	tok, err := c.StartToken(ctx(t), connectors.Source{})
	require.NoError(t, err)
	_, err = c.Changes(ctx(t), connectors.Source{Location: "space:ENG"}, tok)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	_, err = c.Changes(ctx(t), connectors.Source{}, "garbage")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))

	// Confluence refuses the query (the fake: any query not of the
	// connector's shape, here by a test's hand): invalid, its message (which
	// quotes the query) not repeated.
	h.f.mu.Lock()
	h.f.refuseCQL = true
	h.f.mu.Unlock()
	_, err = c.Changes(ctx(t), connectors.Source{}, tok)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	require.NotContains(t, err.Error(), "lastmodified")
	require.NotContains(t, err.Error(), "parse")
}

// The fake answers exactly the connector's CQL shape and refuses any other
// query with Confluence's 400, so that a wrong query fails the tests.
func TestFakeRefusesOtherCQL(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	for cql, status := range map[string]int{
		`type=page AND lastmodified>="2026/11/30 09:00" ORDER BY lastmodified`:                 200,
		`type=page AND space="ENG" AND lastmodified>="2026/11/30 09:00" ORDER BY lastmodified`: 200,
		`type=page AND lastmodified>="2026-11-30 09:00" ORDER BY lastmodified`:                 400,
		`type=page AND lastmodified>="2026/11/30 09:00"`:                                       400,
		`type=page and lastmodified>="2026/11/30 09:00" ORDER BY lastmodified`:                 400,
		`type=page AND lastModified > now("-1d")`:                                              400,
		`type=page AND status=trashed`:                                                         400,
	} {
		req, err := http.NewRequest(http.MethodGet, h.f.srv.URL+"/wiki/rest/api/content/search?"+url.Values{"cql": {cql}}.Encode(), nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+fakeToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, status, resp.StatusCode, cql)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestPickedItems(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	ids := h.f.putN("ENG", "p", 2*pageSize+1)
	pick := []string{ids[8], ids[0], ids[5], ids[1], ids[2], ids[3]}
	h.f.requests = nil
	require.Equal(t, pick, listIDs(t, h.Connector(), connectors.Source{Items: pick}))
	require.Equal(t, 2, len(h.f.requests), "a request per page of picked ids: %v", h.f.requests)

	h.f.setStatus(ids[5], "archived")
	var err error
	for _, err = range connectors.All(ctx(t), h.Connector(), connectors.Source{Items: pick}, "") {
		if err != nil {
			break
		}
	}
	require.ErrorIs(t, err, connectors.ErrGone)
	require.NotContains(t, err.Error(), ids[5])

	_, err = h.Connector().List(ctx(t), connectors.Source{Items: []string{"../spaces"}}, "")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	_, err = h.Connector().Open(ctx(t), connectors.Item{ID: "1?x=y"})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

// A page over the cap fails TooLarge without being read whole when its
// answer names no length; so does Markdown over the cap from a smaller
// answer (a table of wide empty cells).
func TestOpenTooLarge(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	big := h.f.put("ENG", "big", "<p>"+strings.Repeat("0123456789abcdef", 1<<20)+"</p>")
	wide := h.f.put("ENG", "wide", "<table><tr>"+strings.Repeat(`<td colspan="64"/>`, 1000)+"</tr></table>")
	h.f.chunked = true
	for _, id := range []string{big, wide} {
		_, err := h.Connector().Open(ctx(t), connectors.Item{ID: id, Size: -1})
		require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "page %s: %v", id, err)
	}
	require.Less(t, h.Served(big), int64(16<<20), "the connector stopped reading")
	require.Less(t, h.Served(wide), int64(maxBytes), "the answer was under the cap")
}

// A purged page (404) and a trashed one (answered with its status) are both
// gone at Open.
func TestOpenGone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	purged := h.f.put("ENG", "purged", "<p>a</p>")
	archived := h.f.put("ENG", "archived", "<p>b</p>")
	h.f.setStatus(purged, "")
	h.f.setStatus(archived, "archived")
	trashed := h.f.put("ENG", "trashed", "<p>c</p>")
	h.f.setStatus(trashed, "trashed")
	kept := h.f.put("ENG", "kept", "<p>d</p>")
	for _, id := range []string{purged, archived, trashed} {
		_, err := h.Connector().Open(ctx(t), connectors.Item{ID: id, Size: -1})
		require.ErrorIs(t, err, connectors.ErrGone)
	}
	require.Equal(t, []string{kept}, listIDs(t, h.Connector(), connectors.Source{}), "only current pages are listed")
}

func TestNewBaseURL(t *testing.T) {
	t.Parallel()
	_, err := confluence.New(confluence.Config{}, rest.Static(apiary.NewSecret("t")))
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	_, err = confluence.New(confluence.Config{CloudID: "../x"}, rest.Static(apiary.NewSecret("t")))
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))

	var got []string
	rt := roundTrip(func(r *http.Request) (*http.Response, error) {
		got = append(got, r.URL.Scheme+"://"+r.URL.Host+r.URL.Path)
		require.Equal(t, "Bearer tok", r.Header.Get("Authorization"))
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"results":[]}`)), Request: r}, nil
	})
	c, err := confluence.New(confluence.Config{CloudID: "1324a887-45db-1bf4-1e99-ef0ff456d421", HTTP: &http.Client{Transport: rt}},
		rest.Static(apiary.NewSecret("tok")))
	require.NoError(t, err)
	_, err = c.List(ctx(t), connectors.Source{}, "")
	require.NoError(t, err)
	require.Equal(t, []string{"https://api.atlassian.com/ex/confluence/1324a887-45db-1bf4-1e99-ef0ff456d421/wiki/api/v2/pages"}, got)
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestClassify(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	c, err := confluence.New(confluence.Config{CloudID: "abc", Now: func() time.Time { return now }}, nil)
	require.NoError(t, err)
	v2 := `{"errors":[{"status":400,"code":"INVALID_REQUEST_PARAMETER","title":"Provided value {secret title} for 'title' is not valid","detail":null}]}`
	v1 := `{"statusCode":400,"data":{"authorized":true,"valid":false,"errors":[],"successful":false},"message":"Could not parse cql : title=\"secret title\""}`
	for _, tc := range []struct {
		name   string
		status int
		header http.Header
		body   string
		kind   apiary.Kind
		retry  time.Duration // 0: none expected
		gone   bool
	}{
		{"v2 400", 400, nil, v2, apiary.KindInvalid, 0, false},
		{"v1 400", 400, nil, v1, apiary.KindInvalid, 0, false},
		{"401", 401, nil, `{"code":401,"message":"Unauthorized"}`, apiary.KindUnauthenticated, 0, false},
		{"401 scope", 401, nil, `{"code":401,"message":"Unauthorized; scope does not match"}`, apiary.KindForbidden, 0, false},
		{"401 scope header", 401, http.Header{"X-Failure-Category": {"FAILURE_CLIENT_SCOPE_CHECK"}}, "", apiary.KindForbidden, 0, false},
		{"403", 403, nil, `{"errors":[{"status":403,"code":"FORBIDDEN","title":"secret title","detail":null}]}`, apiary.KindForbidden, 0, false},
		{"404", 404, nil, `{"errors":[{"status":404,"code":"NOT_FOUND","title":"secret title","detail":null}]}`, apiary.KindNotFound, 0, true},
		{"429 retry-after", 429, http.Header{"Retry-After": {"7"}, "X-Ratelimit-Reset": {"2026-11-30T10:00Z"}}, "", apiary.KindRateLimited, 7 * time.Second, false},
		{"429 reset vs date", 429, http.Header{"X-Ratelimit-Reset": {"2026-11-30T12:05Z"}, "Date": {"Mon, 30 Nov 2026 12:03:00 GMT"}}, "", apiary.KindRateLimited, 2 * time.Minute, false},
		{"429 reset vs now", 429, http.Header{"X-Ratelimit-Reset": {"2026-11-30T09:01Z"}}, "", apiary.KindRateLimited, time.Minute, false},
		{"429 beta only", 429, http.Header{"Beta-Retry-After": {"99"}}, "", apiary.KindRateLimited, connectors.DefaultRetryAfter, false},
		{"503 retry-after", 503, http.Header{"Retry-After": {"12"}}, "", apiary.KindRateLimited, 12 * time.Second, false},
		{"503", 503, nil, "", apiary.KindUnavailable, 0, false},
		{"500", 500, nil, "", apiary.KindUnavailable, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tc.status, Header: tc.header}
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			err := c.Classify(resp, []byte(tc.body), "confluence: list pages")
			require.Equal(t, tc.kind, apiary.KindOf(err), "%v", err)
			require.NotContains(t, err.Error(), "secret")
			require.NotContains(t, err.Error(), "parse")
			require.Equal(t, tc.gone, errorsIsGone(err))
			d, ok := apiary.RetryDelay(err)
			if tc.retry != 0 {
				require.True(t, ok)
				require.Equal(t, tc.retry, d)
			}
			if tc.name == "v2 400" {
				require.Contains(t, err.Error(), "INVALID_REQUEST_PARAMETER")
			}
		})
	}
}

func errorsIsGone(err error) bool {
	for e := err; e != nil; {
		if e == connectors.ErrGone {
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

// Errors name neither the token nor a query: a rate limit and an expired
// credential while the change feed runs.
func TestErrorsHoldNoSecret(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "space:ENG")
	h.f.put("ENG", "Secret title", "<p>x</p>")
	c := h.conn(t, confluence.Config{})
	tok, err := c.StartToken(ctx(t), h.Source())
	require.NoError(t, err)
	h.f.limits = append(h.f.limits, 3*time.Second)
	_, err = c.Changes(ctx(t), h.Source(), tok)
	require.Equal(t, apiary.KindRateLimited, apiary.KindOf(err))
	h.f.expired = true
	_, err = c.Changes(ctx(t), h.Source(), tok)
	require.Equal(t, apiary.KindUnauthenticated, apiary.KindOf(err))
	for _, s := range []string{fakeToken, "lastmodified", "Secret", "cql"} {
		require.NotContains(t, err.Error(), s)
	}
}
