package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
