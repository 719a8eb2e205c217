// Package connectortest is the conformance suite of the connectors.Connector
// port. Every connector runs it against its local fake of the vendor's API
// (and, where one exists, a real server process) through a Harness that its
// test implements:
//
//	func TestConformance(t *testing.T) {
//		connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newFake(t) })
//	}
//
// The suite checks pagination (more items than a page), cursor resume (no
// item twice, none lost), stable content versions that change with the
// content, an expired credential (KindUnauthenticated), rate limiting
// (KindRateLimited carrying the server's delay), a deleted item
// (connectors.ErrGone), an item over the size cap (TooLarge without reading
// it all), non-UTF-8 content (bytes passed through untouched; non-ASCII text
// kept whole for a vendor that holds text only, see TextHarness), a listing
// of picked items (Source.Items) and, for connectors that have one, the
// change feed (connectors.ChangeFeed: changed and removed items after a
// token).
package connectortest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
)

// Harness drives a connector's fake server. Each test gets a fresh one.
type Harness interface {
	// Connector returns the connector under test, talking to the fake,
	// with page size PageSize and size cap MaxBytes.
	Connector() connectors.Connector
	// Source is what to list on the fake.
	Source() connectors.Source
	// PageSize is how many items a List page holds at most.
	PageSize() int
	// MaxBytes is the connector's size cap.
	MaxBytes() int64
	// Put adds (or replaces) an item named name with content and returns
	// the Item.ID the connector will list it under.
	Put(t *testing.T, name string, content []byte) string
	// Delete removes the item of id at the source; listing may still name
	// it (a stale sitemap, a changes feed) but fetching it is gone.
	Delete(t *testing.T, id string)
	// ExpireCredential makes the fake refuse the connector's credential
	// from now on. It returns false for a connector without a credential
	// (web), and the test is skipped.
	ExpireCredential(t *testing.T) bool
	// RateLimit makes the fake's next answer a rate limit with delay d.
	RateLimit(t *testing.T, d time.Duration)
	// Served reports how many content bytes the fake has written so far to
	// fetches of id (to check a cap stops reading early).
	Served(id string) int64
}

// TextHarness is implemented by the harness of a connector whose vendor
// holds text, not bytes: an API that serves content as JSON (Notion's
// blocks, Confluence's storage format) carries only Unicode, so invalid
// UTF-8 cannot be stored there, let alone come back, and such a connector
// renders the text (as Markdown) rather than passing bytes through. For it
// NonUTF8 checks what still holds: non-ASCII text comes back intact, in
// valid UTF-8.
type TextHarness interface {
	Harness
	// TextOnly reports whether the vendor holds text only.
	TextOnly() bool
}

// Run runs the suite, calling newHarness for each test.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"Pagination", testPagination},
		{"CursorResume", testCursorResume},
		{"Versions", testVersions},
		{"ExpiredCredential", testExpiredCredential},
		{"RateLimit", testRateLimit},
		{"DeletedItem", testDeletedItem},
		{"TooLarge", testTooLarge},
		{"NonUTF8", testNonUTF8},
		{"PickedItems", testPickedItems},
		{"ChangeFeed", testChangeFeed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newHarness(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// putN adds n items and returns the ids a listing should name: theirs and
// those the source listed before (a crawl's start page, say).
func putN(t *testing.T, h Harness, n int) map[string]bool {
	ids := map[string]bool{}
	for it, err := range connectors.All(ctx(t), h.Connector(), h.Source(), "") {
		require.NoError(t, err)
		ids[it.ID] = true
	}
	for i := range n {
		ids[h.Put(t, fmt.Sprintf("doc-%03d", i), []byte(fmt.Sprintf("<p>document %d</p>", i)))] = true
	}
	return ids
}

// listAll lists src to the end from cursor, page by page, checking page
// sizes, and returns the ids in order and the number of pages.
func listAll(t *testing.T, h Harness, cursor connectors.Cursor) ([]string, int) {
	t.Helper()
	var ids []string
	pages := 0
	for {
		page, err := h.Connector().List(ctx(t), h.Source(), cursor)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Items), h.PageSize(), "a page holds at most PageSize items")
		pages++
		for _, it := range page.Items {
			ids = append(ids, it.ID)
		}
		if page.Next == "" {
			return ids, pages
		}
		require.NotEqual(t, cursor, page.Next, "a cursor must move on")
		cursor = page.Next
		require.Less(t, pages, 10_000, "the listing does not end")
	}
}

func testPagination(t *testing.T, h Harness) {
	want := putN(t, h, 2*h.PageSize()+1)
	ids, pages := listAll(t, h, "")
	require.GreaterOrEqual(t, pages, 3, "more items than a page are listed over several pages")
	got := map[string]bool{}
	for _, id := range ids {
		require.False(t, got[id], "item %s listed twice", id)
		got[id] = true
	}
	require.Equal(t, want, got)
}

func testCursorResume(t *testing.T, h Harness) {
	want := putN(t, h, 2*h.PageSize()+1)
	first, err := h.Connector().List(ctx(t), h.Source(), "")
	require.NoError(t, err)
	require.NotEmpty(t, first.Next, "a listing longer than a page has a next cursor")
	// A fresh connector, as after a restart: the cursor alone resumes.
	rest, _ := listAll(t, h, first.Next)
	got := map[string]bool{}
	for _, it := range first.Items {
		got[it.ID] = true
	}
	for _, id := range rest {
		require.False(t, got[id], "item %s listed again after resuming", id)
		got[id] = true
	}
	require.Equal(t, want, got)
}

func versions(t *testing.T, h Harness) map[string]string {
	t.Helper()
	out := map[string]string{}
	for it, err := range connectors.All(ctx(t), h.Connector(), h.Source(), "") {
		require.NoError(t, err)
		out[it.ID] = it.Version
	}
	return out
}

// openVersion is the version an item has: listed, or else answered by a fetch.
func openVersion(t *testing.T, h Harness, id, listed string) string {
	t.Helper()
	if listed != "" {
		return listed
	}
	c, err := h.Connector().Open(ctx(t), connectors.Item{ID: id, Size: -1})
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, c.Body)
	require.NoError(t, err)
	require.NoError(t, c.Body.Close())
	return c.Version
}

func testVersions(t *testing.T, h Harness) {
	a := h.Put(t, "a", []byte("first content"))
	h.Put(t, "b", []byte("other content"))
	v1 := versions(t, h)
	va := openVersion(t, h, a, v1[a])
	require.NotEmpty(t, va, "an item has a content version, listed or fetched")
	require.Equal(t, va, openVersion(t, h, a, versions(t, h)[a]), "an unchanged item keeps its version")

	// A conditional fetch of an unchanged item says so.
	_, err := h.Connector().Open(ctx(t), connectors.Item{ID: a, Size: -1, Seen: va})
	if err != nil {
		require.ErrorIs(t, err, connectors.ErrNotModified)
	}

	h.Put(t, "a", []byte("second content, changed"))
	require.NotEqual(t, va, openVersion(t, h, a, versions(t, h)[a]), "a changed item has a new version")
	c, err := h.Connector().Open(ctx(t), connectors.Item{ID: a, Size: -1, Seen: va})
	require.NoError(t, err, "a conditional fetch of a changed item fetches it")
	body, err := io.ReadAll(c.Body)
	require.NoError(t, err)
	require.NoError(t, c.Body.Close())
	require.Contains(t, string(body), "second content")
}

func testExpiredCredential(t *testing.T, h Harness) {
	id := h.Put(t, "a", []byte("content"))
	if !h.ExpireCredential(t) {
		t.Skip("the connector uses no credential")
	}
	_, err := h.Connector().List(ctx(t), h.Source(), "")
	require.Equal(t, apiary.KindUnauthenticated, apiary.KindOf(err), "list with an expired credential: %v", err)
	_, err = h.Connector().Open(ctx(t), connectors.Item{ID: id, Size: -1})
	require.Equal(t, apiary.KindUnauthenticated, apiary.KindOf(err), "open with an expired credential: %v", err)
}

func testRateLimit(t *testing.T, h Harness) {
	id := h.Put(t, "a", []byte("content"))
	const delay = 7 * time.Second
	h.RateLimit(t, delay)
	_, err := h.Connector().List(ctx(t), h.Source(), "")
	requireRetryAfter(t, err, delay)

	h.RateLimit(t, delay)
	_, err = h.Connector().Open(ctx(t), connectors.Item{ID: id, Size: -1})
	requireRetryAfter(t, err, delay)

	// The limit passed: the same calls work.
	_, err = h.Connector().List(ctx(t), h.Source(), "")
	require.NoError(t, err)
}

func requireRetryAfter(t *testing.T, err error, delay time.Duration) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, apiary.KindRateLimited, apiary.KindOf(err), "a rate limit: %v", err)
	require.False(t, apiary.IsPermanent(err), "a rate limit is retried")
	d, ok := apiary.RetryDelay(err)
	require.True(t, ok, "a rate limit carries the server's delay")
	require.Equal(t, delay, d)
}

func testDeletedItem(t *testing.T, h Harness) {
	keep := h.Put(t, "keep", []byte("kept"))
	gone := h.Put(t, "gone", []byte("deleted soon"))
	h.Delete(t, gone)
	_, err := h.Connector().Open(ctx(t), connectors.Item{ID: gone, Size: -1})
	require.ErrorIs(t, err, connectors.ErrGone)
	require.Equal(t, apiary.KindNotFound, apiary.KindOf(err))
	require.True(t, apiary.IsPermanent(err), "a deleted item is not retried")

	c, err := h.Connector().Open(ctx(t), connectors.Item{ID: keep, Size: -1})
	require.NoError(t, err)
	require.NoError(t, c.Body.Close())
}

func testTooLarge(t *testing.T, h Harness) {
	// Far larger than the cap and than what socket buffers absorb, so that
	// a connector that reads it all is seen doing so (Served).
	limit := h.MaxBytes()
	big := bytes.Repeat([]byte("0123456789abcdef"), int(max(4*limit, 16<<20)/16))
	id := h.Put(t, "big", big)
	small := h.Put(t, "small", []byte("fits"))

	var listed connectors.Item
	for it, err := range connectors.All(ctx(t), h.Connector(), h.Source(), "") {
		require.NoError(t, err)
		if it.ID == id {
			listed = it
		}
	}
	require.Equal(t, id, listed.ID, "the big item is listed")
	c, err := h.Connector().Open(ctx(t), listed)
	if err == nil {
		var n int64
		n, err = io.Copy(io.Discard, c.Body)
		require.LessOrEqual(t, n, limit, "the body yields at most the cap")
		require.NoError(t, c.Body.Close())
	}
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "an item over the cap: %v", err)
	require.Less(t, h.Served(id), int64(len(big)), "the connector stopped before reading the whole item")

	c, err = h.Connector().Open(ctx(t), connectors.Item{ID: small, Size: -1})
	require.NoError(t, err)
	require.NoError(t, c.Body.Close())
}

func testNonUTF8(t *testing.T, h Harness) {
	if th, ok := h.(TextHarness); ok && th.TextOnly() {
		testNonASCIIText(t, h)
		return
	}
	content := []byte("caf\xe9 \xff\xfe na\xefve \x00\x80 end") // Latin-1 and stray bytes
	id := h.Put(t, "latin1", content)
	c, err := h.Connector().Open(ctx(t), connectors.Item{ID: id, Size: -1})
	require.NoError(t, err)
	got, err := io.ReadAll(c.Body)
	require.NoError(t, err)
	require.NoError(t, c.Body.Close())
	require.True(t, bytes.Equal(content, got), "bytes pass through untouched: got %q", got)
}

// testNonASCIIText is NonUTF8 for a vendor that holds text only: the text
// comes back whole, byte for byte, within valid UTF-8.
func testNonASCIIText(t *testing.T, h Harness) {
	content := "café naïve Ærøskøbing, 日本語のテキスト, ÿ þ \u00a0nbsp, emoji 🐝🍯 end"
	id := h.Put(t, "unicode", []byte(content))
	c, err := h.Connector().Open(ctx(t), connectors.Item{ID: id, Size: -1})
	require.NoError(t, err)
	got, err := io.ReadAll(c.Body)
	require.NoError(t, err)
	require.NoError(t, c.Body.Close())
	require.True(t, utf8.Valid(got), "a text-only vendor's content is valid UTF-8: got %q", got)
	require.Contains(t, string(got), content, "non-ASCII text passes through untouched")
}

func testPickedItems(t *testing.T, h Harness) {
	var ids []string
	for i := range 3 {
		ids = append(ids, h.Put(t, fmt.Sprintf("pick-%d", i), []byte(fmt.Sprintf("picked %d", i))))
	}
	src := h.Source()
	src.Items = []string{ids[2], ids[0]}
	var got []string
	for it, err := range connectors.All(ctx(t), h.Connector(), src, "") {
		require.NoError(t, err)
		got = append(got, it.ID)
	}
	require.Equal(t, []string{ids[2], ids[0]}, got, "a picked listing yields the picked items, in order, and nothing else")

	h.Delete(t, ids[1])
	src.Items = []string{ids[1]}
	var err error
	for _, err = range connectors.All(ctx(t), h.Connector(), src, "") {
		if err != nil {
			break
		}
	}
	if err != nil { // a connector may list a stale pick and fail at Open
		require.ErrorIs(t, err, connectors.ErrGone, "a picked item deleted at the source")
	}
}

func testChangeFeed(t *testing.T, h Harness) {
	feed, ok := h.Connector().(connectors.ChangeFeed)
	if !ok {
		t.Skip("the connector has no change feed")
	}
	keep := h.Put(t, "keep", []byte("unchanged"))
	edit := h.Put(t, "edit", []byte("before"))
	gone := h.Put(t, "gone", []byte("deleted soon"))
	token, err := feed.StartToken(ctx(t), h.Source())
	require.NoError(t, err)

	h.Put(t, "edit", []byte("after the token"))
	added := h.Put(t, "added", []byte("new after the token"))
	h.Delete(t, gone)

	changed, removed := map[string]bool{}, map[string]bool{}
	cur := token
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10_000, "the change feed does not end")
		ch, err := feed.Changes(ctx(t), h.Source(), cur)
		require.NoError(t, err)
		for _, it := range ch.Items {
			changed[it.ID] = true
		}
		for _, id := range ch.Removed {
			removed[id] = true
		}
		if ch.Next == "" {
			require.NotEmpty(t, ch.Token, "the last page of changes names the next sync's token")
			cur = ch.Token
			break
		}
		cur = ch.Next
	}
	require.True(t, changed[edit], "an item changed after the token is listed")
	require.True(t, changed[added], "an item added after the token is listed")
	require.False(t, changed[keep], "an unchanged item is not listed")
	require.True(t, removed[gone], "an item deleted after the token is removed")

	// Nothing changed since: the next sync's feed is empty of these.
	ch, err := feed.Changes(ctx(t), h.Source(), cur)
	require.NoError(t, err)
	for _, it := range ch.Items {
		require.NotEqual(t, edit, it.ID, "a change is listed once, not again from the next token")
	}
}
