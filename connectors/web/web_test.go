package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/web"
)

func listIDs(t *testing.T, c *web.Connector, src connectors.Source) []string {
	t.Helper()
	var ids []string
	for it, err := range connectors.All(context.Background(), c, src, "") {
		require.NoError(t, err)
		ids = append(ids, it.ID)
	}
	return ids
}

func private() *web.Connector { return web.New(web.Config{AllowPrivate: true, PageSize: 3}) }

func TestListObeysRobotsAndStaysOnTheHost(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	pub := s.put("/docs/a", "text/html", []byte("<p>a</p>"))
	s.put("/private/b", "text/html", []byte("<p>b</p>"))
	for _, loc := range []string{"/sitemap.xml", "/"} {
		ids := listIDs(t, private(), connectors.Source{Location: s.url(loc)})
		require.Contains(t, ids, pub, loc)
		for _, id := range ids {
			require.True(t, strings.HasPrefix(id, s.srv.URL+"/"), "%s: %s is off the host", loc, id)
			require.NotContains(t, id, "/private/", "%s: robots.txt disallows %s", loc, id)
			require.NotContains(t, id, "#", "%s: fragments are dropped", loc)
		}
	}
}

func TestRobotsStatus(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		code     int
		wantKind apiary.Kind // KindOther: the listing works, everything allowed
	}{
		{http.StatusNotFound, apiary.KindOther},
		{http.StatusForbidden, apiary.KindOther},
		{http.StatusInternalServerError, apiary.KindUnavailable},
		{http.StatusServiceUnavailable, apiary.KindUnavailable},
	} {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			t.Parallel()
			s := newSite(t)
			s.robotsCode = tt.code
			s.put("/private/b", "text/html", []byte("<p>b</p>"))
			page, err := private().List(context.Background(), connectors.Source{Location: s.url("/sitemap.xml")}, "")
			if tt.wantKind == apiary.KindOther {
				require.NoError(t, err)
				require.Len(t, page.Items, 1, "a 4xx robots.txt allows all")
				return
			}
			require.Equal(t, tt.wantKind, apiary.KindOf(err), "a 5xx robots.txt disallows all: %v", err)
			require.False(t, apiary.IsPermanent(err))
		})
	}
}

func TestSSRFGuard(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	id := s.put("/docs/a", "text/html", []byte("<p>a</p>"))
	guarded := web.New(web.Config{})
	_, err := guarded.List(context.Background(), connectors.Source{Location: s.url("/sitemap.xml")}, "")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "a loopback site without --allow-private-sources: %v", err)
	_, err = guarded.Open(context.Background(), connectors.Item{ID: id, Size: -1})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))

	// A redirect to the metadata service is refused even when private hosts are allowed.
	s.handle("/docs/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	_, err = private().Open(context.Background(), connectors.Item{ID: s.url("/docs/redirect"), Size: -1})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)

	// A same-site redirect is followed.
	s.handle("/docs/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/docs/a", http.StatusMovedPermanently)
	})
	c, err := private().Open(context.Background(), connectors.Item{ID: s.url("/docs/moved"), Size: -1})
	require.NoError(t, err)
	b, _ := io.ReadAll(c.Body)
	c.Body.Close()
	require.Equal(t, "<p>a</p>", string(b))
}

func TestPageCap(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	for i := range 10 {
		s.put(fmt.Sprintf("/docs/%02d", i), "text/html", []byte("x"))
	}
	for _, loc := range []string{"/sitemap.xml", "/"} {
		ids := listIDs(t, private(), connectors.Source{Location: s.url(loc), MaxItems: 4})
		require.Len(t, ids, 4, loc)
	}
}

func TestSitemapNestingAndSizeCaps(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	// /nest/0.xml → /nest/1.xml → … each an index of the next; each level
	// also names a urlset with one page, so the depth reached shows.
	for i := range 8 {
		s.handle(fmt.Sprintf("/nest/%d.xml", i), func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `<sitemapindex><sitemap><loc>/nest/%d.xml</loc></sitemap><sitemap><loc>/leaf/%d.xml</loc></sitemap></sitemapindex>`, i+1, i)
		})
		s.handle(fmt.Sprintf("/leaf/%d.xml", i), func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `<urlset><url><loc>/page/%d</loc></url></urlset>`, i)
		})
	}
	ids := listIDs(t, private(), connectors.Source{Location: s.url("/nest/0.xml")})
	want := []string{}
	for i := range web.MaxSitemapDepth {
		want = append(want, s.url(fmt.Sprintf("/page/%d", i)))
	}
	require.ElementsMatch(t, want, ids, "indexes nest at most MaxSitemapDepth deep")

	// A sitemap over the cap yields what came before the cap.
	s.handle("/big-sitemap.xml", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<urlset>")
		for i := 0; i < 10_000; i++ {
			fmt.Fprintf(w, "<url><loc>/p/%d</loc></url>", i)
		}
		io.WriteString(w, "</urlset>")
	})
	small := web.New(web.Config{AllowPrivate: true, PageSize: 50, MaxSitemapBytes: 4 << 10})
	ids = listIDs(t, small, connectors.Source{Location: s.url("/big-sitemap.xml")})
	require.NotEmpty(t, ids)
	require.Less(t, len(ids), 4<<10/20, "no more than the first 4 KiB are read")

	// A gzip bomb stops at the uncompressed cap too.
	bomb := gz(append([]byte("<urlset><url><loc>/p/1</loc></url>"), bytes.Repeat([]byte("<!-- -->"), 1<<20)...))
	s.handle("/bomb-sitemap.xml.gz", func(w http.ResponseWriter, r *http.Request) { w.Write(bomb) })
	ids = listIDs(t, small, connectors.Source{Location: s.url("/bomb-sitemap.xml.gz")})
	require.Equal(t, []string{s.url("/p/1")}, ids)

	// Not a sitemap at all: invalid, not retried.
	s.handle("/html-sitemap.xml", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html></html>") })
	_, err := private().List(context.Background(), connectors.Source{Location: s.url("/html-sitemap.xml")}, "")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

func TestClassify(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := web.New(web.Config{Now: func() time.Time { return now }})
	resp := func(code int, retry string) *http.Response {
		h := http.Header{}
		if retry != "" {
			h.Set("Retry-After", retry)
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	for _, tt := range []struct {
		resp  *http.Response
		kind  apiary.Kind
		delay time.Duration
	}{
		{resp(200, ""), apiary.KindOther, 0},
		{resp(401, ""), apiary.KindForbidden, 0},
		{resp(403, ""), apiary.KindForbidden, 0},
		{resp(404, ""), apiary.KindNotFound, 0},
		{resp(410, ""), apiary.KindNotFound, 0},
		{resp(429, "120"), apiary.KindRateLimited, 2 * time.Minute},
		{resp(429, now.Add(time.Minute).Format(http.TimeFormat)), apiary.KindRateLimited, time.Minute},
		{resp(429, ""), apiary.KindRateLimited, connectors.DefaultRetryAfter},
		{resp(503, "5"), apiary.KindRateLimited, 5 * time.Second},
		{resp(503, ""), apiary.KindUnavailable, 0},
		{resp(400, ""), apiary.KindInvalid, 0},
	} {
		err := c.Classify(tt.resp, "fetch")
		require.Equal(t, tt.kind, apiary.KindOf(err), "%d", tt.resp.StatusCode)
		d, _ := apiary.RetryDelay(err)
		require.Equal(t, tt.delay, d, "%d", tt.resp.StatusCode)
	}
	require.ErrorIs(t, c.Classify(resp(410, ""), "fetch"), connectors.ErrGone)
	require.Equal(t, "web: fetch: not found at the source (410)", apiary.Message(c.Classify(resp(410, ""), "fetch")), "the message says what happened")
}

func TestDocumentID(t *testing.T) {
	t.Parallel()
	short := "https://example.com/docs/a?b=c"
	require.Equal(t, apiary.DocumentID(short), connectors.DocumentID(short))
	long := "https://example.com/" + strings.Repeat("a", 400)
	id := connectors.DocumentID(long)
	require.NoError(t, id.Validate())
	require.Equal(t, id, connectors.DocumentID(long), "stable")
	require.NotEqual(t, id, connectors.DocumentID(long+"b"), "distinct")
	odd := "https://example.com/\x01" + strings.Repeat("é", 200) + " "
	require.NoError(t, connectors.DocumentID(odd).Validate())
	require.True(t, utf8.ValidString(string(connectors.DocumentID(odd))))
}

func TestForeignCursorIsInvalid(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	for _, c := range []connectors.Cursor{"not base64!", "e30", "eyJoIjoiQUFBPSJ9"} { // "{}" is fine; a hash list of 2 bytes is not
		_, err := private().List(context.Background(), connectors.Source{Location: s.url("/sitemap.xml")}, c)
		if c == "e30" {
			require.NoError(t, err)
			continue
		}
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "cursor %q: %v", c, err)
	}
}

func TestErrorsDoNotNameTheURL(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.srv.Close() // nothing answers
	_, err := private().Open(context.Background(), connectors.Item{ID: s.url("/docs/a?token=canary-secret"), Size: -1})
	require.Error(t, err)
	require.False(t, apiary.IsPermanent(err), "an unreachable site is retried")
	require.NotContains(t, err.Error(), "canary-secret")
}

func TestPickedPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSite(t)
	var urls []string
	for i := range 5 {
		urls = append(urls, s.put(fmt.Sprintf("/docs/%d", i), "text/html; charset=utf-8", bytes.Repeat([]byte("x"), i+1)))
	}
	src := connectors.Source{Location: s.url("/"), Items: []string{urls[4], urls[0] + "#part", urls[2], strings.ToUpper(s.srv.URL[:4]) + s.srv.URL[4:] + "/docs/3"}}
	first, err := private().List(ctx, src, "")
	require.NoError(t, err)
	require.Len(t, first.Items, 3, "picks are paged by the page size")
	require.NotEmpty(t, first.Next)
	second, err := private().List(ctx, src, first.Next)
	require.NoError(t, err)
	require.Empty(t, second.Next)
	got := append(first.Items, second.Items...)
	want := []string{urls[4], urls[0], urls[2], urls[3]}
	s.mu.Lock()
	pages, served := maps.Clone(s.pages), maps.Clone(s.served)
	s.mu.Unlock()
	for i, it := range got {
		require.Equal(t, want[i], it.ID, "in the order picked, normalized as a listing names pages")
		path := strings.TrimPrefix(it.ID, s.srv.URL)
		p := pages[path]
		require.Equal(t, p.etag, it.Version)
		require.EqualValues(t, len(p.body), it.Size)
		require.Equal(t, "text/html; charset=utf-8", it.ContentType)
		require.True(t, p.mod.Equal(it.Modified))
		require.Zero(t, served[path], "described by HEAD: no body is read")
	}

	// A cursor resumes only its own listing.
	other := src
	other.Items = []string{urls[0], urls[1], urls[2], urls[3]}
	_, err = private().List(ctx, other, first.Next)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "another pick list's cursor: %v", err)
	_, err = private().List(ctx, connectors.Source{Location: s.url("/")}, first.Next)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "a picked listing's cursor for the whole site: %v", err)
	whole, err := private().List(ctx, connectors.Source{Location: s.url("/")}, "")
	require.NoError(t, err)
	require.NotEmpty(t, whole.Next)
	_, err = private().List(ctx, src, whole.Next)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "the whole site's cursor for picks: %v", err)

	// A site that refuses HEAD is asked with a GET, closed unread.
	s.handle("/docs/nohead", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("ETag", `"nohead-v1"`)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "body")
	})
	page, err := private().List(ctx, connectors.Source{Location: s.url("/"), Items: []string{s.url("/docs/nohead")}}, "")
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	require.Equal(t, `"nohead-v1"`, page.Items[0].Version)
	require.Equal(t, "text/plain", page.Items[0].ContentType)
}

func TestPickedPagesGoneAndRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSite(t)
	a := s.put("/docs/a", "text/html", []byte("<p>a</p>"))
	list := func(c *web.Connector, maxItems int, items ...string) error {
		_, err := c.List(ctx, connectors.Source{Location: s.url("/sitemap.xml"), MaxItems: maxItems, Items: items}, "")
		return err
	}

	s.mu.Lock()
	s.gone["/docs/deleted"] = http.StatusGone
	s.mu.Unlock()
	for _, path := range []string{"/docs/deleted", "/docs/never?token=canary-secret"} {
		err := list(private(), 0, a, s.url(path))
		require.ErrorIs(t, err, connectors.ErrGone, path)
		require.Equal(t, apiary.KindNotFound, apiary.KindOf(err))
		require.NotContains(t, err.Error(), "/docs/", "the error names no URL")
	}

	err := list(private(), 0, a, s.url("/private/b"))
	require.Equal(t, apiary.KindForbidden, apiary.KindOf(err), "robots.txt disallows a pick: %v", err)

	tooMany := make([]string, web.DefaultMaxPages+1)
	for i := range tooMany {
		tooMany[i] = s.url(fmt.Sprintf("/docs/%d", i))
	}
	for _, tt := range []struct {
		name     string
		items    []string
		maxItems int
	}{
		{"another host", []string{"https://elsewhere.example/docs/a?token=canary-secret"}, 0},
		{"another scheme", []string{strings.Replace(a, "http://", "https://", 1)}, 0},
		{"a relative URL", []string{"/docs/a"}, 0},
		{"not a URL", []string{"http://[::1"}, 0},
		{"picked twice", []string{a, a + "#again"}, 0},
		{"over MaxItems", []string{a, s.url("/docs/b"), s.url("/docs/c")}, 2},
		{"over the default cap", tooMany, 0},
	} {
		err := list(private(), tt.maxItems, tt.items...)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%s: %v", tt.name, err)
		require.NotContains(t, err.Error(), "canary-secret", tt.name)
	}

	// The SSRF guard: a loopback site without --allow-private-sources, and
	// a pick redirected to the metadata service.
	err = list(web.New(web.Config{}), 0, a)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
	s.handle("/docs/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	err = list(private(), 0, s.url("/docs/redirect"))
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
}
