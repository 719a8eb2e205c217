package graph_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/connectortest"
	"github.com/apiaryhq/apiary/connectors/graph"
	"github.com/apiaryhq/apiary/connectors/rest"
)

const (
	pageSize = 4
	maxBytes = 64 << 10
)

// harness runs the conformance suite on the fake, listing "me".
type harness struct {
	f    *fakeGraph
	conn *graph.Connector
}

func newHarness(t *testing.T) *harness {
	f := newFakeGraph(t)
	return &harness{f: f, conn: newConnector(t, f, nil)}
}

// newConnector is a connector to f whose downloads may go to f's download
// host; edit changes its configuration first.
func newConnector(t *testing.T, f *fakeGraph, edit func(*graph.Config)) *graph.Connector {
	cfg := graph.Config{
		BaseURL: f.base(), AllowPrivate: true, PageSize: pageSize, MaxBytes: maxBytes,
		DownloadHosts: []string{f.dlHost()},
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := graph.New(cfg, rest.Static(apiary.NewSecret(f.newToken())))
	require.NoError(t, err)
	return c
}

func (h *harness) Connector() connectors.Connector { return h.conn }
func (h *harness) Source() connectors.Source       { return connectors.Source{Location: "me"} }
func (h *harness) PageSize() int                   { return pageSize }
func (h *harness) MaxBytes() int64                 { return maxBytes }

func (h *harness) Put(t *testing.T, name string, content []byte) string {
	return graph.ItemID(h.f.me, h.f.put(h.f.me, "", name+".txt", content))
}

func (h *harness) Delete(t *testing.T, id string) {
	drive, item, _ := strings.Cut(id, "/")
	h.f.remove(drive, item)
}

func (h *harness) ExpireCredential(t *testing.T) bool { h.f.expire(); return true }
func (h *harness) RateLimit(t *testing.T, d time.Duration) {
	h.f.rateLimit(d)
}
func (h *harness) Served(id string) int64 { return h.f.servedBytes(id) }

func TestConformanceFake(t *testing.T) {
	connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newHarness(t) })
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func listAll(t *testing.T, c connectors.Connector, src connectors.Source) []connectors.Item {
	t.Helper()
	var out []connectors.Item
	for it, err := range connectors.All(ctx(t), c, src, "") {
		require.NoError(t, err)
		out = append(out, it)
	}
	return out
}

func names(items []connectors.Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Name)
	}
	return out
}

func readAll(t *testing.T, c *connectors.Content) string {
	t.Helper()
	b, err := io.ReadAll(c.Body)
	require.NoError(t, err)
	require.NoError(t, c.Body.Close())
	return string(b)
}

// Folders, the root, OneNote notebooks and deleted entries are not
// documents; files in folders are.
func TestListSkipsFoldersNotebooksAndTombstones(t *testing.T) {
	t.Parallel()
	f := newFakeGraph(t)
	c := newConnector(t, f, nil)
	docs := f.mkdir(f.me, "Docs")
	f.put(f.me, docs, "nested.pdf", []byte("%PDF-1.7 nested"))
	f.put(f.me, "", "top.docx", []byte("PK word"))
	f.notebook(f.me, "Team Notebook")
	f.remove(f.me, f.put(f.me, "", "gone.txt", []byte("deleted")))
	f.mkdir(f.me, "Empty")

	items := listAll(t, c, connectors.Source{Location: "me"})
	require.ElementsMatch(t, []string{"nested.pdf", "top.docx"}, names(items))
	for _, it := range items {
		require.True(t, strings.HasPrefix(it.ID, f.me+"/"), "an ID names its drive: %s", it.ID)
		require.NotEmpty(t, it.Version)
		require.Greater(t, it.Size, int64(0))
		require.False(t, it.Modified.IsZero())
	}
	require.Equal(t, "application/pdf", items[0].ContentType)
}

// A SharePoint site's default library and a drive named by id are sources.
func TestSiteAndDriveLocations(t *testing.T) {
	t.Parallel()
	f := newFakeGraph(t)
	c := newConnector(t, f, nil)
	site, drive := f.addSite()
	f.put(drive, "", "policy.md", []byte("# Policy"))
	f.put(f.me, "", "mine.txt", []byte("not the site's"))

	for _, loc := range []string{"site:" + site, "drive:" + drive} {
		items := listAll(t, c, connectors.Source{Location: loc})
		require.Equal(t, []string{"policy.md"}, names(items), loc)
		require.True(t, strings.HasPrefix(items[0].ID, drive+"/"))
		content, err := c.Open(ctx(t), items[0])
		require.NoError(t, err)
		require.Equal(t, "# Policy", readAll(t, content))
	}

	_, err := c.List(ctx(t), connectors.Source{Location: "site:unknown.sharepoint.com,1,2"}, "")
	require.ErrorIs(t, err, connectors.ErrGone)
	for _, loc := range []string{"sites:x", "drive:", "drive:a/b", "folder:x", "https://contoso.sharepoint.com"} {
		_, err := c.List(ctx(t), connectors.Source{Location: loc}, "")
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), loc)
	}
}

// The download host never sees the bearer token.
func TestDownloadCarriesNoAuthorization(t *testing.T) {
	t.Parallel()
	f := newFakeGraph(t)
	c := newConnector(t, f, nil)
	f.put(f.me, "", "a.txt", []byte("alpha"))
	f.put(f.me, "", "b.txt", []byte("beta"))
	for _, it := range listAll(t, c, connectors.Source{}) {
		content, err := c.Open(ctx(t), it)
		require.NoError(t, err)
		require.Equal(t, "text/plain; charset=utf-8", content.ContentType)
		require.Equal(t, it.Version, content.Version)
		require.NotEmpty(t, readAll(t, content))
		require.Greater(t, f.servedBytes(it.ID), int64(0), "the download host served the item")
	}
	require.Zero(t, f.authorizedDownloads(), "no download request carried an Authorization header")
}

// A redirect to a host that is not an allowed download host, to a URL with
// credentials in it, or a second redirect, is refused: nothing is fetched
// and the error names no URL.
func TestRedirectsRefused(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		set  func(f *fakeGraph)
	}{
		{"other host", func(f *fakeGraph) {
			_, port, _ := net.SplitHostPort(f.dlHost())
			f.location = "http://localhost:" + port + "/evil"
		}},
		{"the API itself", func(f *fakeGraph) { f.location = f.api.URL + "/v1.0/me/drive" }},
		{"user info", func(f *fakeGraph) { f.location = "http://user:pw@" + f.dlHost() + "/x" }},
		{"other scheme", func(f *fakeGraph) { f.location = "ftp://" + f.dlHost() + "/x" }},
		{"second redirect", func(f *fakeGraph) { f.redirectDL = f.dl.URL + "/again?tempauth=secret-canary" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeGraph(t)
			c := newConnector(t, f, nil)
			id := graph.ItemID(f.me, f.put(f.me, "", "a.txt", []byte("alpha")))
			f.set(tt.set)
			_, err := c.Open(ctx(t), connectors.Item{ID: id, Size: -1})
			require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
			msg := err.Error()
			for _, leak := range []string{"tempauth", "://", "localhost", "127.0.0.1", "canary", "evil"} {
				require.NotContains(t, msg, leak, "the error names no URL")
			}
			require.Zero(t, f.servedBytes(id))
			require.Zero(t, f.authorizedDownloads())
		})
	}
}

// The default download hosts match SharePoint and OneDrive names (a
// transport here sends every name to the fake's download host), and only
// them.
func TestDefaultDownloadHosts(t *testing.T) {
	t.Parallel()
	f := newFakeGraph(t)
	apiHost := strings.TrimPrefix(f.api.URL, "http://")
	dialer := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != apiHost {
			addr = f.dlHost()
		}
		return dialer.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	c := newConnector(t, f, func(cfg *graph.Config) {
		cfg.DownloadHosts = nil
		cfg.HTTP = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	})
	id := graph.ItemID(f.me, f.put(f.me, "", "a.txt", []byte("alpha")))
	for loc, ok := range map[string]bool{
		"http://contoso.sharepoint.com/dl":               true,
		"http://contoso-my.sharepoint.com/dl":            true,
		"http://public.bn.files.1drv.com/dl":             true,
		"http://my.microsoftpersonalcontent.com/dl":      true,
		"http://sharepoint.com/dl":                       false,
		"http://contoso.sharepoint.com.evil.example/dl":  false,
		"http://notsharepoint.com/dl":                    false,
		"http://graph.microsoft.com/dl":                  false,
		"http://contoso.sharepoint.com:8443@evil.com/dl": false,
	} {
		f.set(func(f *fakeGraph) { f.location = loc })
		content, err := c.Open(ctx(t), connectors.Item{ID: id, Size: -1})
		if ok {
			require.NoError(t, err, loc)
			require.Equal(t, "alpha", readAll(t, content))
		} else {
			require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), loc)
		}
	}
	require.Zero(t, f.authorizedDownloads())
}

// A delta token Graph no longer honours (410 resyncRequired) is invalid:
// the caller lists in full, which works.
func TestResyncRequiredIsInvalid(t *testing.T) {
	t.Parallel()
	f := newFakeGraph(t)
	c := newConnector(t, f, nil)
	f.put(f.me, "", "a.txt", []byte("alpha"))
	token, err := c.StartToken(ctx(t), connectors.Source{})
	require.NoError(t, err)
	f.put(f.me, "", "b.txt", []byte("beta"))
	f.forgetTokens()

	_, err = c.Changes(ctx(t), connectors.Source{}, token)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
	require.True(t, apiary.IsPermanent(err))
	require.Contains(t, err.Error(), "resyncRequired")
	require.NotContains(t, err.Error(), "Replace any local items", "Graph's message is not quoted")

	require.ElementsMatch(t, []string{"a.txt", "b.txt"}, names(listAll(t, c, connectors.Source{})))
	token, err = c.StartToken(ctx(t), connectors.Source{})
	require.NoError(t, err)
	_, err = c.Changes(ctx(t), connectors.Source{}, token)
	require.NoError(t, err, "a fresh token works")
}

// The change feed names files changed and ids deleted, not folders or
// notebooks, and with picked items only theirs.
func TestChangeFeedQuirks(t *testing.T) {
	t.Parallel()
	f := newFakeGraph(t)
	c := newConnector(t, f, nil)
	a := f.put(f.me, "", "a.txt", []byte("alpha"))
	b := f.put(f.me, "", "b.txt", []byte("beta"))
	folder := f.mkdir(f.me, "Old")
	token, err := c.StartToken(ctx(t), connectors.Source{Location: "me"})
	require.NoError(t, err)

	f.put(f.me, "", "a.txt", []byte("alpha 2"))
	f.put(f.me, "", "b.txt", []byte("beta 2"))
	f.mkdir(f.me, "New")
	f.notebook(f.me, "Notes")
	f.remove(f.me, folder)
	f.remove(f.me, b)

	changes := func(src connectors.Source) (changed, removed []string) {
		cur := token
		for {
			ch, err := c.Changes(ctx(t), src, cur)
			require.NoError(t, err)
			for _, it := range ch.Items {
				changed = append(changed, it.ID)
			}
			removed = append(removed, ch.Removed...)
			if ch.Next == "" {
				require.NotEmpty(t, ch.Token)
				return changed, removed
			}
			cur = ch.Next
		}
	}
	changed, removed := changes(connectors.Source{Location: "me"})
	require.Equal(t, []string{graph.ItemID(f.me, a)}, changed)
	require.Equal(t, []string{graph.ItemID(f.me, b)}, removed, "a deleted folder is not a removed document")

	changed, removed = changes(connectors.Source{Location: "me", Items: []string{graph.ItemID(f.me, b)}})
	require.Empty(t, changed, "with picks, only picked items")
	require.Equal(t, []string{graph.ItemID(f.me, b)}, removed)

	_, err = c.Changes(ctx(t), connectors.Source{Location: "drive:" + f.me}, token)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "another source's token")
}

// Where delta leaves cTag out (OneDrive for Business), the version is the
// eTag: it changes with content (and with a rename), never stays put on a
// change.
func TestVersionWithoutCTag(t *testing.T) {
	t.Parallel()
	f := newFakeGraph(t)
	c := newConnector(t, f, nil)
	id := f.put(f.me, "", "a.txt", []byte("alpha"))
	v1 := listAll(t, c, connectors.Source{})[0].Version
	require.True(t, strings.HasPrefix(v1, `"c:`), "the cTag when listed: %s", v1)
	f.rename(f.me, id, "b.txt")
	require.Equal(t, v1, listAll(t, c, connectors.Source{})[0].Version, "a rename keeps the cTag")

	f.set(func(f *fakeGraph) { f.omitCTag = true })
	e1 := listAll(t, c, connectors.Source{})[0].Version
	require.True(t, strings.HasPrefix(e1, `"{`), "the eTag without a cTag: %s", e1)
	f.put(f.me, "", "b.txt", []byte("alpha 2"))
	require.NotEqual(t, e1, listAll(t, c, connectors.Source{})[0].Version)
}

// A vendor page with more documents than PageSize is split over List
// pages; none is lost or repeated.
func TestLargeVendorPageSplit(t *testing.T) {
	t.Parallel()
	f := newFakeGraph(t)
	f.set(func(f *fakeGraph) { f.ignoreTop = true })
	c := newConnector(t, f, nil)
	want := map[string]bool{}
	for i := range 3*pageSize + 2 {
		want[graph.ItemID(f.me, f.put(f.me, "", strings.Repeat("x", i+1)+".txt", []byte("x")))] = true
	}
	got := map[string]bool{}
	var cur connectors.Cursor
	for pages := 0; ; pages++ {
		require.Less(t, pages, 100)
		page, err := c.List(ctx(t), connectors.Source{}, cur)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Items), pageSize)
		for _, it := range page.Items {
			require.False(t, got[it.ID], "listed twice: %s", it.ID)
			got[it.ID] = true
		}
		if page.Next == "" {
			break
		}
		cur = page.Next
	}
	require.Equal(t, want, got)

	items := listAll(t, c, connectors.Source{MaxItems: 5})
	require.Len(t, items, 5, "MaxItems caps the listing")
}

// A nextLink to another origin is not followed with the token; a cursor
// of another source, or not a cursor, is invalid.
func TestForeignLinksAndCursors(t *testing.T) {
	t.Parallel()
	f := newFakeGraph(t)
	c := newConnector(t, f, nil)
	for i := range 2 * pageSize {
		f.put(f.me, "", strings.Repeat("y", i+1)+".txt", []byte("y"))
	}
	first, err := c.List(ctx(t), connectors.Source{}, "")
	require.NoError(t, err)
	require.NotEmpty(t, first.Next)
	_, err = c.List(ctx(t), connectors.Source{Location: "drive:" + f.me}, first.Next)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "another source's cursor")
	_, err = c.List(ctx(t), connectors.Source{}, "not a cursor")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))

	// A cursor whose link was changed to another origin, or to outside the
	// API's base path, is not followed with the token.
	raw, err := base64.RawURLEncoding.DecodeString(string(first.Next))
	require.NoError(t, err)
	var st map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // the source hash is a uint64
	require.NoError(t, dec.Decode(&st))
	link := st["l"].(string)
	for _, bad := range []string{
		link, // unchanged: followed
		strings.Replace(link, f.api.URL, "http://localhost:1", 1),
		strings.Replace(link, "/v1.0/", "/beta/", 1),
	} {
		st["l"] = bad
		raw, _ = json.Marshal(st)
		_, err = c.List(ctx(t), connectors.Source{}, connectors.Cursor(base64.RawURLEncoding.EncodeToString(raw)))
		if bad == link {
			require.NoError(t, err)
			continue
		}
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), bad)
		require.Contains(t, err.Error(), "cursor", "refused before any request")
	}

	f.set(func(f *fakeGraph) { f.foreignNxt = "https://graph.evil.example" })
	_, err = c.List(ctx(t), connectors.Source{}, "")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "a nextLink of another origin")
	require.NotContains(t, err.Error(), "evil")
}

// Picked ids may be full IDs or bare item ids of the source's drive; a
// picked folder is skipped.
func TestPickedBareIDs(t *testing.T) {
	t.Parallel()
	f := newFakeGraph(t)
	c := newConnector(t, f, nil)
	a := f.put(f.me, "", "a.txt", []byte("alpha"))
	folder := f.mkdir(f.me, "Docs")
	items := listAll(t, c, connectors.Source{Items: []string{a, folder}})
	require.Len(t, items, 1)
	require.Equal(t, graph.ItemID(f.me, a), items[0].ID)

	for _, bad := range []string{"../../me", "..", "a?b", f.me + "/../x"} {
		_, err := c.List(ctx(t), connectors.Source{Items: []string{bad}}, "")
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), bad)
	}

	// A picked listing's cursor is its picks': another's is invalid.
	two := connectors.Source{Items: []string{a, a, a, a, a}}
	page, err := c.List(ctx(t), two, "")
	require.NoError(t, err)
	require.NotEmpty(t, page.Next)
	_, err = c.List(ctx(t), connectors.Source{Items: []string{a}}, page.Next)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

// The conditional fetch asks with the listed cTag.
func TestConditionalOpen(t *testing.T) {
	t.Parallel()
	f := newFakeGraph(t)
	c := newConnector(t, f, nil)
	f.put(f.me, "", "a.txt", []byte("alpha"))
	it := listAll(t, c, connectors.Source{})[0]
	it.Seen = it.Version
	_, err := c.Open(ctx(t), it)
	require.ErrorIs(t, err, connectors.ErrNotModified)
	require.Zero(t, f.servedBytes(it.ID))
}

func TestClassify(t *testing.T) {
	t.Parallel()
	body := func(code, inner string) []byte {
		return []byte(`{"error":{"code":"` + code + `","message":"secret-canary at https://x/?token=y","innerError":{"code":"` + inner + `","request-id":"1"}}}`)
	}
	for _, tt := range []struct {
		status int
		header string
		body   []byte
		kind   apiary.Kind
		delay  time.Duration
	}{
		{401, "", body("InvalidAuthenticationToken", ""), apiary.KindUnauthenticated, 0},
		{403, "", body("accessDenied", ""), apiary.KindForbidden, 0},
		{404, "", body("itemNotFound", ""), apiary.KindNotFound, 0},
		{410, "", body("resyncRequired", "resyncChangesApplyDifferences"), apiary.KindInvalid, 0},
		{410, "", []byte(`{"error":{"code":"generalException","innererror":{"code":"resyncChangesUploadDifferences"}}}`), apiary.KindInvalid, 0},
		{410, "", body("itemNotFound", ""), apiary.KindNotFound, 0},
		{429, "12", body("activityLimitReached", ""), apiary.KindRateLimited, 12 * time.Second},
		{429, "", body("TooManyRequests", ""), apiary.KindRateLimited, connectors.DefaultRetryAfter},
		{503, "30", body("serviceNotAvailable", ""), apiary.KindRateLimited, 30 * time.Second},
		{509, "5", nil, apiary.KindRateLimited, 5 * time.Second},
		{503, "", body("serviceNotAvailable", ""), apiary.KindUnavailable, 0},
		{500, "", body("generalException", ""), apiary.KindUnavailable, 0},
		{400, "", body("invalidRequest", ""), apiary.KindInvalid, 0},
		{401, "", []byte(`{"error":{"code":"a code with https://evil/ in it"}}`), apiary.KindUnauthenticated, 0},
	} {
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
		if tt.header != "" {
			resp.Header.Set("Retry-After", tt.header)
		}
		err := graph.Classify(resp, tt.body, "graph: list the drive")
		require.Equal(t, tt.kind, apiary.KindOf(err), "%d %s: %v", tt.status, tt.body, err)
		if tt.delay > 0 {
			d, ok := apiary.RetryDelay(err)
			require.True(t, ok)
			require.Equal(t, tt.delay, d)
		}
		for _, leak := range []string{"canary", "token=", "https"} {
			require.NotContains(t, err.Error(), leak)
		}
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tok := rest.Static(apiary.NewSecret("t"))
	for _, cfg := range []graph.Config{
		{BaseURL: "graph.microsoft.com"},
		{DownloadHosts: []string{"*."}},
		{DownloadHosts: []string{"https://x.sharepoint.com"}},
		{DownloadHosts: []string{"*.*.com"}},
	} {
		_, err := graph.New(cfg, tok)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%+v", cfg)
	}
	_, err := graph.New(graph.Config{}, tok)
	require.NoError(t, err, "the defaults are valid")
}
