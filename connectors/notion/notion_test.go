package notion_test

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/notion"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func open(t *testing.T, c *notion.Connector, id string) (string, *connectors.Content) {
	t.Helper()
	content, err := c.Open(ctx(t), connectors.Item{ID: id, Size: -1})
	require.NoError(t, err)
	body, err := io.ReadAll(content.Body)
	require.NoError(t, err)
	require.NoError(t, content.Body.Close())
	return string(body), content
}

func para(s string) map[string]any {
	return map[string]any{"rich_text": []any{text(s)}, "color": "default"}
}

func rich(parts ...map[string]any) map[string]any {
	rt := []any{}
	for _, p := range parts {
		rt = append(rt, p)
	}
	return map[string]any{"rich_text": rt, "color": "default"}
}

// goldenPage builds a realistic page: annotations, nested lists, code, a
// table, a child page, media, columns and blocks the renderer skips.
func goldenPage(f *fakeNotion) string {
	id := f.addPage("Release notes: Q3 / planning", "")
	f.addBlock(id, "heading_1", rich(text("Overview")))
	f.addBlock(id, "paragraph", rich(text("This release is "), styled("bold", []string{"bold"}, ""), text(", "),
		styled("italic ", []string{"italic"}, ""), text("and "), styled("go test ./...", []string{"code"}, ""), text(", with "),
		styled("struck", []string{"strikethrough"}, ""), text(" text and "), styled("a link", nil, "https://example.com/docs"),
		text(". Energy: "), map[string]any{"type": "equation", "equation": map[string]any{"expression": "E = mc^2"}, "plain_text": "E = mc^2",
			"annotations": map[string]any{"bold": false, "italic": false, "strikethrough": false, "underline": false, "code": false, "color": "default"}, "href": nil}))
	f.addBlock(id, "paragraph", rich()) // an empty spacer
	a := f.addBlock(id, "bulleted_list_item", rich(text("Ingestion")))
	a1 := f.addBlock(a, "bulleted_list_item", rich(text("Notion connector")))
	f.addBlock(a1, "bulleted_list_item", rich(styled("Markdown", []string{"bold", "italic"}, ""), text(" rendering")))
	f.addBlock(a, "bulleted_list_item", rich(text("Confluence connector")))
	f.addBlock(id, "bulleted_list_item", rich(text("Search")))
	f.addBlock(id, "heading_2", rich(text("Steps")))
	f.addBlock(id, "numbered_list_item", rich(text("Share the pages with the integration")))
	two := f.addBlock(id, "numbered_list_item", rich(text("Start a sync")))
	f.addBlock(two, "numbered_list_item", rich(text("Pick the pages")))
	f.addBlock(two, "paragraph", rich(text("The sync lists them first.")))
	f.addBlock(id, "numbered_list_item", rich(text("Check the results")))
	f.addBlock(id, "to_do", map[string]any{"rich_text": []any{text("Write the docs")}, "checked": true, "color": "default"})
	f.addBlock(id, "to_do", map[string]any{"rich_text": []any{text("Announce it")}, "checked": false, "color": "default"})
	tg := f.addBlock(id, "toggle", rich(text("Details")))
	f.addBlock(tg, "paragraph", rich(text("Hidden until opened.")))
	q := f.addBlock(id, "quote", rich(text("Ship small,\nship often.")))
	f.addBlock(q, "paragraph", rich(text("— the team")))
	f.addBlock(id, "callout", map[string]any{"rich_text": []any{text("Tokens are never logged.")}, "icon": map[string]any{"type": "emoji", "emoji": "💡"}, "color": "gray_background"})
	f.addBlock(id, "code", map[string]any{"rich_text": []any{text("func main() {\n\tfmt.Println(\"``hi``\")\n}")}, "language": "go", "caption": []any{}})
	f.addBlock(id, "code", map[string]any{"rich_text": []any{text("plain words")}, "language": "plain text", "caption": []any{}})
	f.addBlock(id, "divider", map[string]any{})
	tb := f.addBlock(id, "table", map[string]any{"table_width": 3, "has_column_header": true, "has_row_header": false})
	f.addBlock(tb, "table_row", map[string]any{"cells": []any{[]any{text("Name")}, []any{text("Role")}, []any{text("Notes")}}})
	f.addBlock(tb, "table_row", map[string]any{"cells": []any{[]any{text("Ada")}, []any{styled("lead", []string{"bold"}, "")}, []any{text("a|b")}}})
	f.addBlock(tb, "table_row", map[string]any{"cells": []any{[]any{text("Linus")}, []any{}, []any{text("two\nlines")}}})
	f.addPage("Design doc", id)
	f.addBlock(id, "bookmark", map[string]any{"url": "https://example.com/rfc", "caption": []any{text("The RFC")}})
	f.addBlock(id, "image", map[string]any{"type": "external", "external": map[string]any{"url": "https://images.example.com/arch.png"}, "caption": []any{text("Architecture")}})
	f.addBlock(id, "file", map[string]any{"type": "file", "name": "plan.pdf", "caption": []any{},
		"file": map[string]any{"url": "https://prod-files-secure.s3.us-west-2.amazonaws.com/ws/plan.pdf?X-Amz-Signature=canarySIGNATURE&X-Amz-Expires=3600", "expiry_time": "2025-03-01T10:00:00.000Z"}})
	f.addBlock(id, "equation", map[string]any{"expression": "\\sum_{i=1}^n i = \\frac{n(n+1)}{2}"})
	cols := f.addBlock(id, "column_list", map[string]any{})
	left := f.addBlock(cols, "column", map[string]any{})
	f.addBlock(left, "paragraph", rich(text("Left column.")))
	right := f.addBlock(cols, "column", map[string]any{})
	f.addBlock(right, "paragraph", rich(text("Right column.")))
	f.addBlock(id, "table_of_contents", map[string]any{"color": "default"})
	f.addBlock(id, "unsupported", map[string]any{})
	f.addBlock(id, "heading_3", rich(text("The end")))
	return id
}

func TestGoldenMarkdown(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	id := goldenPage(f)
	c := f.connector(t, notion.Config{})
	body, content := open(t, c, id)
	require.Equal(t, notion.ContentType, content.ContentType)
	require.NotContains(t, body, "canarySIGNATURE", "a Notion-hosted file's signed query is left out")

	golden := filepath.Join("testdata", "golden.md")
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(body), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), body)
}

func TestListing(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.advance(time.Minute)
	old := f.addPage("Old page", "")
	f.advance(time.Minute)
	row := f.addRow("Database row")
	f.advance(time.Minute)
	trashed := f.addPage("Trashed", "")
	f.trash(trashed)
	f.advance(10 * time.Minute)
	c := f.connector(t, notion.Config{})

	page, err := c.List(ctx(t), connectors.Source{}, "")
	require.NoError(t, err)
	require.Empty(t, page.Next)
	require.Len(t, page.Items, 2, "a trashed page is not listed")
	got := page.Items[0]
	require.Equal(t, row, got.ID, "the last edited first")
	require.Equal(t, "Database row.md", got.Name, "a database row's title is its title column's")
	require.Equal(t, "2025-03-01T09:02:00.000Z", got.Version)
	require.Equal(t, time.Date(2025, 3, 1, 9, 2, 0, 0, time.UTC), got.Modified)
	require.Equal(t, notion.ContentType, got.ContentType)
	require.Equal(t, old, page.Items[1].ID)

	// Picked pages, in order; a trashed pick is gone.
	page, err = c.List(ctx(t), connectors.Source{Items: []string{strings.ReplaceAll(old, "-", ""), row}}, "")
	require.NoError(t, err)
	require.Equal(t, []string{old, row}, []string{page.Items[0].ID, page.Items[1].ID}, "ids are read with or without dashes")
	_, err = c.List(ctx(t), connectors.Source{Items: []string{trashed}}, "")
	require.ErrorIs(t, err, connectors.ErrGone)
	require.NotContains(t, err.Error(), trashed, "a picked listing's error names no id")
	_, err = c.List(ctx(t), connectors.Source{Items: []string{"0f1e2d3c-4b5a-4697-8877-66554433aabb"}}, "")
	require.ErrorIs(t, err, connectors.ErrGone, "a pick not found (or no longer shared)")
	require.NotContains(t, err.Error(), "0f1e2d3c")
}

func TestSourceValidation(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c := f.connector(t, notion.Config{PageSize: 1})
	f.addPage("one", "")
	f.addPage("two", "")
	for _, tc := range []struct {
		name string
		src  connectors.Source
	}{
		{"unknown form", connectors.Source{Location: "database:123"}},
		{"not an id", connectors.Source{Location: "page:../../users"}},
		{"picked id not an id", connectors.Source{Items: []string{"../search"}}},
	} {
		_, err := c.List(ctx(t), tc.src, "")
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%s: %v", tc.name, err)
	}
	first, err := c.List(ctx(t), connectors.Source{}, "")
	require.NoError(t, err)
	require.NotEmpty(t, first.Next)
	_, err = c.List(ctx(t), connectors.Source{Items: []string{"1c2b3a4d5e6f47a8b9c0d1e2f3a4b5c6"}}, first.Next)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "another source's cursor: %v", err)
	_, err = c.Open(ctx(t), connectors.Item{ID: "../blocks/x"})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

func TestNotionVersionPinned(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	id := f.put("pinned", "", []byte("content"))
	c := f.connector(t, notion.Config{})
	_, err := c.List(ctx(t), connectors.Source{}, "")
	require.NoError(t, err)
	open(t, c, id)
	f.mu.Lock()
	require.Equal(t, map[string]int{"2022-06-28": len(f.requests)}, f.versions, "every request pins the version")
	f.mu.Unlock()
	require.Equal(t, "2022-06-28", notion.NotionVersion)

	// Without the header Notion refuses the request.
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+"/v1/pages/"+id, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, string(body), `"code":"missing_version"`)
	err = notion.Classify(resp, body, "notion: retrieve page")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	require.Contains(t, err.Error(), "missing_version")
}

func TestOverloadedRetriesAfter(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	id := f.put("busy", "", []byte("content"))
	c := f.connector(t, notion.Config{})
	f.fail(529, "service_unavailable", 11*time.Second)
	_, err := c.List(ctx(t), connectors.Source{}, "")
	require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "%v", err)
	require.False(t, apiary.IsPermanent(err))
	d, ok := apiary.RetryDelay(err)
	require.True(t, ok, "Notion's overload names when to retry")
	require.Equal(t, 11*time.Second, d)

	f.fail(http.StatusServiceUnavailable, "service_unavailable", 4*time.Second)
	_, err = c.Open(ctx(t), connectors.Item{ID: id})
	require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err))
	d, _ = apiary.RetryDelay(err)
	require.Equal(t, 4*time.Second, d)

	open(t, c, id) // the overload passed
}

func TestArchivedPageGone(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	id := f.put("archived", "", []byte("old content"))
	f.mu.Lock()
	f.pages[id].archived = true // archived, as before the trash existed
	f.mu.Unlock()
	c := f.connector(t, notion.Config{})
	_, err := c.Open(ctx(t), connectors.Item{ID: id})
	require.ErrorIs(t, err, connectors.ErrGone)
	page, err := c.List(ctx(t), connectors.Source{}, "")
	require.NoError(t, err)
	require.Empty(t, page.Items, "an archived page is not listed")

	// A page never shared (or deleted for good) is not found: gone too.
	_, err = c.Open(ctx(t), connectors.Item{ID: "0f1e2d3c-4b5a-4697-8877-66554433aabb"})
	require.ErrorIs(t, err, connectors.ErrGone)
	require.NotContains(t, err.Error(), "shared with your integration", "Notion's message is not quoted")
}

func TestBlockCap(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	id := f.addPage("many blocks", "")
	for range 250 { // three pages of blocks
		f.addBlock(id, "paragraph", para("a line"))
	}
	_, err := f.connector(t, notion.Config{MaxBlocks: 249}).Open(ctx(t), connectors.Item{ID: id})
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%v", err)
	body, _ := open(t, f.connector(t, notion.Config{MaxBlocks: 250}), id)
	require.Equal(t, 250, strings.Count(body, "a line"), "every page of blocks is read")
}

func TestDepthCap(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	id := f.addPage("deep", "")
	parent := id
	for _, s := range []string{"level 1", "level 2", "level 3", "level 4"} {
		parent = f.addBlock(parent, "bulleted_list_item", rich(text(s)))
	}
	body, _ := open(t, f.connector(t, notion.Config{MaxDepth: 3}), id)
	require.Equal(t, "# deep\n\n- level 1\n  - level 2\n    - level 3\n", body, "blocks deeper than the cap are left out")
}

func TestMarkdownCap(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	id := f.put("long", "", bytes.Repeat([]byte("x"), 300_000))
	_, err := f.connector(t, notion.Config{MaxBytes: 10_000}).Open(ctx(t), connectors.Item{ID: id})
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err))
	f.mu.Lock()
	n := 0
	for _, r := range f.requests {
		if strings.HasSuffix(r, "/children") {
			n++
		}
	}
	f.mu.Unlock()
	require.Equal(t, 1, n, "no block is asked for once over the cap")
}

// Notion rounds last_edited_time down to the minute: an edit in the minute
// of a listing keeps the time that listing saw. The version stays unsettled
// until the minute is over, so the edit is fetched by the next listing.
func TestVersionSettles(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	id := f.put("minutes", "", []byte("first draft"))
	f.advance(10 * time.Second)
	c := f.connector(t, notion.Config{})
	listed := func() string {
		page, err := c.List(ctx(t), connectors.Source{}, "")
		require.NoError(t, err)
		require.Len(t, page.Items, 1)
		return page.Items[0].Version
	}
	v1 := listed()
	require.Equal(t, "2025-03-01T09:01:00.000Z~", v1, "a version of this minute is unsettled")
	_, content := open(t, c, id)
	require.Equal(t, v1, content.Version)
	_, err := c.Open(ctx(t), connectors.Item{ID: id, Seen: v1})
	require.NoError(t, err, "an unsettled version is fetched again")

	// Edited again in the same minute: Notion's time does not move.
	f.advance(20 * time.Second)
	f.mu.Lock()
	f.blocks[f.pages[id].children[0]].data = para("second draft")
	f.mu.Unlock()
	f.advance(3 * time.Minute)
	v2 := listed()
	require.Equal(t, "2025-03-01T09:01:00.000Z", v2, "settled once the minute is over")
	require.NotEqual(t, v1, v2, "so the sync fetches it again")
	body, content := open(t, c, id)
	require.Contains(t, body, "second draft")
	require.Equal(t, v2, content.Version)

	// A settled version equal to the page's: nothing is fetched.
	f.mu.Lock()
	before := len(f.requests)
	f.mu.Unlock()
	_, err = c.Open(ctx(t), connectors.Item{ID: id, Seen: v2})
	require.ErrorIs(t, err, connectors.ErrNotModified)
	f.mu.Lock()
	require.Equal(t, []string{"GET /v1/pages/" + id}, f.requests[before:], "the page only, no block")
	f.mu.Unlock()
}

func TestPageTree(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	root := f.addPage("Handbook", "")
	var kids []string
	for _, title := range []string{"Onboarding", "Benefits", "Travel", "Security"} {
		kids = append(kids, f.addPage(title, root))
		f.addBlock(root, "paragraph", para("between the child pages"))
	}
	f.addPage("Grandchild", kids[0])
	f.trash(kids[2])
	f.addPage("Elsewhere", "")
	c := f.connector(t, notion.Config{PageSize: 2})

	var got []string
	cur := connectors.Cursor("")
	for {
		page, err := c.List(ctx(t), connectors.Source{Location: "page:" + root}, cur)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Items), 2)
		for _, it := range page.Items {
			got = append(got, it.Name)
		}
		if cur = page.Next; cur == "" {
			break
		}
	}
	require.Equal(t, []string{"Handbook.md", "Onboarding.md", "Benefits.md", "Security.md"}, got,
		"the page, then its child pages in order; not a trashed one, a grandchild, or another page")

	page, err := c.List(ctx(t), connectors.Source{Location: "page:" + root, MaxItems: 2}, "")
	require.NoError(t, err)
	require.Len(t, page.Items, 2)
	require.Empty(t, page.Next, "MaxItems ends the listing")

	f.trash(root)
	_, err = c.List(ctx(t), connectors.Source{Location: "page:" + root}, "")
	require.ErrorIs(t, err, connectors.ErrGone, "the source's page is gone")
}

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		code   string
		kind   apiary.Kind
		delay  time.Duration
	}{
		{401, "unauthorized", apiary.KindUnauthenticated, 0},
		{403, "restricted_resource", apiary.KindForbidden, 0},
		{404, "object_not_found", apiary.KindNotFound, 0},
		{429, "rate_limited", apiary.KindRateLimited, 3 * time.Second},
		{429, "", apiary.KindRateLimited, 3 * time.Second},
		{529, "", apiary.KindUnavailable, 3 * time.Second},
		{503, "service_unavailable", apiary.KindUnavailable, 3 * time.Second},
		{503, "database_connection_unavailable", apiary.KindUnavailable, 3 * time.Second},
		{500, "internal_server_error", apiary.KindUnavailable, 3 * time.Second},
		{409, "conflict_error", apiary.KindUnavailable, 3 * time.Second},
		{400, "validation_error", apiary.KindInvalid, 0},
		{400, "invalid_json", apiary.KindInvalid, 0},
		{400, "missing_version", apiary.KindInvalid, 0},
		{418, "", apiary.KindInvalid, 0},
	} {
		body := []byte(`{"object":"error","status":` + strconv.Itoa(tc.status) + `,"code":"` + tc.code + `","message":"secret_canary in the request"}`)
		resp := &http.Response{StatusCode: tc.status, Header: http.Header{"Retry-After": {"3"}}}
		err := notion.Classify(resp, body, "notion: list pages")
		require.Equal(t, tc.kind, apiary.KindOf(err), "%d %s: %v", tc.status, tc.code, err)
		d, _ := apiary.RetryDelay(err)
		require.Equal(t, tc.delay, d, "%d %s", tc.status, tc.code)
		require.NotContains(t, err.Error(), "secret_canary", "Notion's message is never quoted")
		if tc.kind == apiary.KindNotFound {
			require.ErrorIs(t, err, connectors.ErrGone)
		}
	}
	// A code that is not one is not named.
	err := notion.Classify(&http.Response{StatusCode: 400}, []byte(`{"code":"Bearer secret_canary"}`), "notion: x")
	require.NotContains(t, err.Error(), "secret_canary")
}

func TestNewNeedsATokenSource(t *testing.T) {
	t.Parallel()
	_, err := notion.New(notion.Config{}, nil)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	_, err = notion.New(notion.Config{BaseURL: "ftp://x"}, nil)
	require.Error(t, err)
}

// A rate limit in the middle of a render is waited out (with Config.Wait)
// when short, so that a long page is not started over; a long one fails.
func TestRenderWaitsOutShortLimits(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	id := f.addPage("long page", "")
	for range 150 {
		f.addBlock(id, "paragraph", para("a line"))
	}
	var waits []time.Duration
	c := f.connector(t, notion.Config{Wait: func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return nil
	}})
	f.failOn("/children", http.StatusTooManyRequests, "rate_limited", 2*time.Second)
	f.failOn("/children", 529, "service_unavailable", time.Second)
	body, _ := open(t, c, id)
	require.Equal(t, 150, strings.Count(body, "a line"))
	require.Equal(t, []time.Duration{2 * time.Second, time.Second}, waits)

	waits = nil
	f.failOn("/children", http.StatusTooManyRequests, "rate_limited", time.Minute)
	_, err := c.Open(ctx(t), connectors.Item{ID: id})
	require.Equal(t, apiary.KindRateLimited, apiary.KindOf(err))
	d, _ := apiary.RetryDelay(err)
	require.Equal(t, time.Minute, d, "a long limit is the worker's to wait")
	require.Empty(t, waits)

	for range 6 {
		f.failOn("/children", http.StatusTooManyRequests, "rate_limited", time.Second)
	}
	_, err = c.Open(ctx(t), connectors.Item{ID: id})
	require.Equal(t, apiary.KindRateLimited, apiary.KindOf(err), "the waits are bounded")
	require.Len(t, waits, 5)
}
