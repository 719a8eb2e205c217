package gdrive_test

import (
	"context"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/gdrive"
	"github.com/apiaryhq/apiary/connectors/gdrive/gdrivetest"
	"github.com/apiaryhq/apiary/connectors/rest"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// listed lists src to the end and returns its items by ID.
func listed(t *testing.T, c connectors.Connector, src connectors.Source) map[string]connectors.Item {
	t.Helper()
	out := map[string]connectors.Item{}
	for it, err := range connectors.All(ctx(t), c, src, "") {
		require.NoError(t, err)
		require.NotContains(t, out, it.ID, "listed twice")
		out[it.ID] = it
	}
	return out
}

func names(items map[string]connectors.Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Name)
	}
	slices.Sort(out)
	return out
}

func open(t *testing.T, c connectors.Connector, it connectors.Item) (string, *connectors.Content) {
	t.Helper()
	content, err := c.Open(ctx(t), it)
	require.NoError(t, err)
	defer content.Body.Close()
	return readAll(t, content.Body), content
}

func TestListSkipsFoldersShortcutsTrashAndOtherNativeTypes(t *testing.T) {
	h := newHarness(t, "all") // a folder, a shortcut, a drawing, a trashed file
	h.f.Add("", "notes.txt", "text/plain", []byte("notes"))
	h.f.Add("", "Plan", gdrivetest.MimeDoc, []byte("# Plan"))
	h.f.Add("", "README.md", gdrivetest.MimeDoc, []byte("# Read me"))
	require.Equal(t, []string{"Plan.md", "README.md", "notes.txt"}, names(listed(t, h.conn, h.src)))
}

func TestNativeFilesAreExportedAsText(t *testing.T) {
	h := newHarness(t, "all")
	doc := h.f.Add("", "Plan", gdrivetest.MimeDoc, []byte("# Plan\n\nShip **it**.\n"))
	sheet := h.f.Add("", "Budget", gdrivetest.MimeSheet, []byte("item,cost\ntea,3\n"))
	slides := h.f.Add("", "Deck", gdrivetest.MimeSlides, []byte("Title slide\n"))
	items := listed(t, h.conn, h.src)

	for _, tt := range []struct {
		id, name, ctype, body string
	}{
		{doc, "Plan.md", "text/markdown", "# Plan\n\nShip **it**.\n"},
		{sheet, "Budget.csv", "text/csv", "item,cost\ntea,3\n"},
		{slides, "Deck.txt", "text/plain", "Title slide\n"},
	} {
		it := items[tt.id]
		require.Equal(t, tt.name, it.Name, "the name carries the extension of what Open returns")
		require.Equal(t, int64(-1), it.Size, "Drive's size of a native file is not its export's")
		require.NotEmpty(t, it.Version)
		body, content := open(t, h.conn, it)
		require.Equal(t, tt.body, body)
		require.Equal(t, tt.ctype, content.ContentType)
		require.Equal(t, it.Version, content.Version)

		// Opened by id alone, the file is looked up first, then exported.
		gets := h.f.MetadataGets()
		body, content = open(t, h.conn, connectors.Item{ID: tt.id, Size: -1})
		require.Equal(t, tt.body, body)
		require.Equal(t, tt.ctype, content.ContentType)
		require.Equal(t, it.Version, content.Version)
		require.Equal(t, gets+1, h.f.MetadataGets())
	}

	// A native file's version is Drive's version: an edit changes it.
	h.f.SetContent(doc, []byte("# Plan v2"))
	require.NotEqual(t, items[doc].Version, listed(t, h.conn, h.src)[doc].Version)
}

func TestExportOverDrivesLimitIsTooLarge(t *testing.T) {
	h := newHarness(t, "all")
	h.f.SetExportLimit(16)
	doc := h.f.Add("", "Long", gdrivetest.MimeDoc, []byte(strings.Repeat("words ", 10)))
	_, err := h.conn.Open(ctx(t), listed(t, h.conn, h.src)[doc])
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%v", err)
	require.Contains(t, err.Error(), "exportSizeLimitExceeded")
	require.NotContains(t, err.Error(), gdrivetest.VendorText)
	require.Zero(t, h.f.ServedBytes(doc))

	// An export under Drive's limit but over ours stops at our cap.
	h.f.SetExportLimit(10 << 20)
	c := newConnector(t, h.base, h.f.Token(), gdrive.Config{MaxBytes: 8})
	content, err := c.Open(ctx(t), connectors.Item{ID: doc, ContentType: gdrivetest.MimeDoc, Size: -1})
	require.NoError(t, err)
	_, err = io.ReadAll(content.Body)
	require.NoError(t, content.Body.Close())
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%v", err)
}

func TestDriveFileScopeListsOnlyPickedItems(t *testing.T) {
	h := newHarness(t, "folder")
	picked := h.f.Add("", "picked.txt", "text/plain", []byte("picked"))
	for _, scope := range []string{gdrive.ScopeFile, "https://www.googleapis.com/auth/drive.file"} {
		c := newConnector(t, h.base, h.f.Token(), gdrive.Config{Scope: scope})
		for _, loc := range []string{"", "all", h.src.Location, "drive:0Aabc"} {
			src := connectors.Source{Location: loc}
			_, err := c.List(ctx(t), src, "")
			require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "list %q: %v", loc, err)
			require.Contains(t, apiary.Message(err), "drive.file")
			require.Contains(t, apiary.Message(err), "items")
			_, err = c.StartToken(ctx(t), src)
			require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "start token %q: %v", loc, err)
		}
		src := connectors.Source{Items: []string{picked}}
		require.Equal(t, []string{"picked.txt"}, names(listed(t, c, src)))
		_, err := c.StartToken(ctx(t), src)
		require.NoError(t, err)
	}

	_, err := gdrive.New(gdrive.Config{Scope: "drive"}, nil)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

func TestFolderIsWalkedRecursively(t *testing.T) {
	f, base := gdrivetest.Start(t)
	top := f.Add("", "top", gdrivetest.MimeFolder, nil)
	want := []string{f.Add(top, "a.txt", "text/plain", []byte("a"))}
	sub1 := f.Add(top, "sub1", gdrivetest.MimeFolder, nil)
	f.Add(top, "empty", gdrivetest.MimeFolder, nil)
	want = append(want, f.Add(sub1, "b.txt", "text/plain", []byte("b")))
	sub2 := f.Add(sub1, "sub2", gdrivetest.MimeFolder, nil)
	want = append(want, f.Add(sub2, "c", gdrivetest.MimeDoc, []byte("c")))
	only := f.Add(top, "only folders", gdrivetest.MimeFolder, nil)
	deep := f.Add(f.Add(f.Add(only, "x", gdrivetest.MimeFolder, nil), "y", gdrivetest.MimeFolder, nil), "z", gdrivetest.MimeFolder, nil)
	want = append(want, f.Add(deep, "d.txt", "text/plain", []byte("d")))
	f.Add("", "outside.txt", "text/plain", []byte("not in top"))
	f.Add(f.Add("", "elsewhere", gdrivetest.MimeFolder, nil), "e.txt", "text/plain", []byte("not in top"))

	c := newConnector(t, base, f.Token(), gdrive.Config{PageSize: 1})
	src := connectors.Source{Location: "folder:" + top}
	var got []string
	var cur connectors.Cursor
	for pages := 0; ; pages++ {
		require.Less(t, pages, 100)
		page, err := c.List(ctx(t), src, cur)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Items), 1)
		for _, it := range page.Items {
			got = append(got, it.ID)
		}
		if page.Next == "" {
			break
		}
		require.NotContains(t, string(page.Next), "ya29", "the cursor holds no credential")
		cur = page.Next
	}
	slices.Sort(got)
	slices.Sort(want)
	require.Equal(t, want, got, "every file under the folder, once, and nothing else")

	// MaxItems caps the walk.
	src.MaxItems = 2
	require.Len(t, listed(t, c, src), 2)

	// Another source's cursor is refused.
	page, err := c.List(ctx(t), connectors.Source{Location: "folder:" + top}, "")
	require.NoError(t, err)
	_, err = c.List(ctx(t), connectors.Source{Location: "folder:" + sub1}, page.Next)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

func TestSharedDriveListing(t *testing.T) {
	f, base := gdrivetest.Start(t)
	d, other := f.AddDrive(), f.AddDrive()
	folder := f.Add(d, "team", gdrivetest.MimeFolder, nil)
	inDrive := []string{
		f.Add(d, "spec.txt", "text/plain", []byte("spec")),
		f.Add(folder, "Minutes", gdrivetest.MimeDoc, []byte("# Minutes")),
	}
	f.Add(other, "other.txt", "text/plain", []byte("other drive"))
	f.Add("", "mine.txt", "text/plain", []byte("my drive"))
	c := newConnector(t, base, f.Token(), gdrive.Config{})

	items := listed(t, c, connectors.Source{Location: "drive:" + d})
	require.Equal(t, []string{"Minutes.md", "spec.txt"}, names(items))
	body, _ := open(t, c, items[inDrive[0]])
	require.Equal(t, "spec", body)

	// A shared drive's file is found by id (supportsAllDrives), and its
	// folder is walked.
	require.Equal(t, []string{"Minutes.md"}, names(listed(t, c, connectors.Source{Items: []string{inDrive[1]}})))
	require.Equal(t, []string{"Minutes.md"}, names(listed(t, c, connectors.Source{Location: "folder:" + folder})))
	// "all" reaches every drive.
	require.Equal(t, []string{"Minutes.md", "mine.txt", "other.txt", "spec.txt"}, names(listed(t, c, connectors.Source{})))
}

func TestPickedItems(t *testing.T) {
	h := newHarness(t, "all")
	doc := h.f.Add("", "Plan", gdrivetest.MimeDoc, []byte("# Plan"))
	dir := h.f.Add("", "dir", gdrivetest.MimeFolder, nil)
	txt := h.f.Add("", "a.txt", "text/plain", []byte("a"))
	var got []string
	for it, err := range connectors.All(ctx(t), h.conn, connectors.Source{Items: []string{txt, dir, doc}}, "") {
		require.NoError(t, err)
		got = append(got, it.Name)
	}
	require.Equal(t, []string{"a.txt", "Plan.md"}, got, "in order, a folder skipped")

	h.f.Remove(txt)
	_, err := h.conn.List(ctx(t), connectors.Source{Items: []string{doc, txt}}, "")
	require.ErrorIs(t, err, connectors.ErrGone)
	require.NotContains(t, err.Error(), txt, "the error names no picked id")
	require.NotContains(t, err.Error(), gdrivetest.VendorText)

	h.f.Trash(doc)
	_, err = h.conn.List(ctx(t), connectors.Source{Items: []string{doc}}, "")
	require.ErrorIs(t, err, connectors.ErrGone)

	_, err = h.conn.List(ctx(t), connectors.Source{Items: []string{"../about"}}, "")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

func TestErrorsNeverQuoteDriveNorTheToken(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault gdrivetest.Fault
		kind  apiary.Kind
		wait  time.Duration
	}{
		{"user rate limit", gdrivetest.Fault{Status: 403, Reason: "userRateLimitExceeded"}, apiary.KindRateLimited, connectors.DefaultRetryAfter},
		{"rate limit with a delay", gdrivetest.Fault{Status: 403, Reason: "rateLimitExceeded", RetryAfter: 9 * time.Second}, apiary.KindRateLimited, 9 * time.Second},
		{"429", gdrivetest.Fault{Status: 429, Reason: "rateLimitExceeded", RetryAfter: 3 * time.Second}, apiary.KindRateLimited, 3 * time.Second},
		{"429 without a reason", gdrivetest.Fault{Status: 429}, apiary.KindRateLimited, connectors.DefaultRetryAfter},
		{"daily limit", gdrivetest.Fault{Status: 403, Reason: "dailyLimitExceeded"}, apiary.KindRateLimited, connectors.MaxRetryAfter},
		{"file permissions", gdrivetest.Fault{Status: 403, Reason: "insufficientFilePermissions"}, apiary.KindForbidden, 0},
		{"domain policy", gdrivetest.Fault{Status: 403, Reason: "domainPolicy"}, apiary.KindForbidden, 0},
		{"app not authorized", gdrivetest.Fault{Status: 403, Reason: "appNotAuthorizedToFile"}, apiary.KindForbidden, 0},
		{"not found", gdrivetest.Fault{Status: 404, Reason: "notFound"}, apiary.KindNotFound, 0},
		{"invalid", gdrivetest.Fault{Status: 400, Reason: "invalid"}, apiary.KindInvalid, 0},
		{"backend error", gdrivetest.Fault{Status: 500, Reason: "backendError"}, apiary.KindUnavailable, 0},
		{"unavailable", gdrivetest.Fault{Status: 503, Reason: "backendError"}, apiary.KindUnavailable, 0},
		{"a reason that is not a code", gdrivetest.Fault{Status: 403, Reason: "<" + gdrivetest.VendorText + ">"}, apiary.KindForbidden, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, "all")
			tt.fault.Message = "Drive explains at length"
			h.f.FailNext(tt.fault)
			_, err := h.conn.List(ctx(t), h.src, "")
			require.Equal(t, tt.kind, apiary.KindOf(err), "%v", err)
			require.NotContains(t, err.Error(), gdrivetest.VendorText)
			require.NotContains(t, err.Error(), "explains")
			require.NotContains(t, err.Error(), "ya29")
			require.True(t, strings.HasPrefix(err.Error(), "gdrive: list files: "), err.Error())
			d, ok := apiary.RetryDelay(err)
			if tt.wait > 0 {
				require.True(t, ok)
				require.Equal(t, tt.wait, d)
			}
		})
	}

	t.Run("expired token", func(t *testing.T) {
		h := newHarness(t, "all")
		id := h.f.Add("", "a.txt", "text/plain", []byte("a"))
		h.f.SetToken("ya29.other")
		_, err := h.conn.Open(ctx(t), connectors.Item{ID: id, ContentType: "text/plain", Size: 1})
		require.Equal(t, apiary.KindUnauthenticated, apiary.KindOf(err))
		require.NotContains(t, err.Error(), "ya29", "the fake echoed the token; the error must not")
		require.NotContains(t, err.Error(), gdrivetest.VendorText)
		require.NotContains(t, err.Error(), "alt=media", "no URL query")
	})
}

// changes runs the feed from token to its end.
func changes(t *testing.T, c *gdrive.Connector, src connectors.Source, token connectors.Cursor) (items map[string]connectors.Item, removed map[string]bool, next connectors.Cursor) {
	t.Helper()
	items, removed = map[string]connectors.Item{}, map[string]bool{}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000)
		ch, err := c.Changes(ctx(t), src, token)
		require.NoError(t, err)
		for _, it := range ch.Items {
			items[it.ID] = it
		}
		for _, id := range ch.Removed {
			require.NotEmpty(t, id)
			removed[id] = true
		}
		if ch.Next == "" {
			return items, removed, ch.Token
		}
		token = ch.Next
	}
}

func TestChangeFeedOfAFolder(t *testing.T) {
	f, base := gdrivetest.Start(t)
	top := f.Add("", "top", gdrivetest.MimeFolder, nil)
	sub := f.Add(top, "sub", gdrivetest.MimeFolder, nil)
	deepFile := f.Add(sub, "deep.txt", "text/plain", []byte("v1"))
	leaving := f.Add(top, "leaving.txt", "text/plain", []byte("here"))
	doc := f.Add(top, "Doc", gdrivetest.MimeDoc, []byte("# v1"))
	outside := f.Add("", "outside.txt", "text/plain", []byte("v1"))
	gone := f.Add(sub, "gone.txt", "text/plain", []byte("bye"))
	c := newConnector(t, base, f.Token(), gdrive.Config{PageSize: 2})
	src := connectors.Source{Location: "folder:" + top}
	token, err := c.StartToken(ctx(t), src)
	require.NoError(t, err)

	f.SetContent(deepFile, []byte("v2"))
	f.SetContent(doc, []byte("# v2"))
	f.Move(leaving, f.Root())
	f.SetContent(outside, []byte("v2"))
	f.Remove(gone)
	newSub := f.Add(sub, "new", gdrivetest.MimeFolder, nil)
	added := f.Add(newSub, "added.txt", "text/plain", []byte("new"))
	f.Add("", "shortcut", gdrivetest.MimeShortcut, nil)

	items, removed, next := changes(t, c, src, token)
	require.Equal(t, []string{"Doc.md", "added.txt", "deep.txt"}, names(items))
	require.Equal(t, "text/plain", items[added].ContentType)
	require.True(t, removed[leaving], "a file moved out of the folder is removed")
	require.True(t, removed[gone], "a file deleted for good is removed")
	require.True(t, removed[outside], "a file outside the folder is reported removed (documented)")
	require.NotEmpty(t, next)

	items, removed, _ = changes(t, c, src, next)
	require.Empty(t, items)
	require.Empty(t, removed)
}

func TestChangeFeedOfASharedDrive(t *testing.T) {
	f, base := gdrivetest.Start(t)
	d := f.AddDrive()
	in := f.Add(d, "in.txt", "text/plain", []byte("v1"))
	mine := f.Add("", "mine.txt", "text/plain", []byte("v1"))
	leaving := f.Add(d, "leaving.txt", "text/plain", []byte("v1"))
	c := newConnector(t, base, f.Token(), gdrive.Config{})
	src := connectors.Source{Location: "drive:" + d}
	token, err := c.StartToken(ctx(t), src)
	require.NoError(t, err)
	allToken, err := c.StartToken(ctx(t), connectors.Source{})
	require.NoError(t, err)

	f.SetContent(in, []byte("v2"))
	f.SetContent(mine, []byte("v2"))
	other := f.AddDrive() // a drive's own change: no file
	f.Add("", "a folder", gdrivetest.MimeFolder, nil)
	f.Add("", "a shortcut", gdrivetest.MimeShortcut, nil)
	f.Add(other, "other.txt", "text/plain", []byte("x"))
	f.MoveToDrive(leaving, other)

	items, removed, _ := changes(t, c, src, token)
	require.Equal(t, []string{"in.txt"}, names(items))
	require.Equal(t, map[string]bool{leaving: true}, removed, "a file moved to another drive left this one")

	items, removed, _ = changes(t, c, connectors.Source{}, allToken)
	require.Equal(t, []string{"in.txt", "leaving.txt", "mine.txt", "other.txt"}, names(items))
	require.Empty(t, removed)

	// A token of another source, or a listing's cursor, is not this feed's.
	_, err = c.Changes(ctx(t), connectors.Source{}, token)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	page, err := c.List(ctx(t), connectors.Source{Location: "drive:" + d, MaxItems: 1}, "")
	require.NoError(t, err)
	_, err = c.Changes(ctx(t), src, page.Next)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))

	// A token Drive no longer honours is invalid: the caller lists anew.
	f.FailNext(gdrivetest.Fault{Status: 400, Reason: "invalid"})
	_, err = c.Changes(ctx(t), src, token)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

func TestChangeFeedOfPickedItems(t *testing.T) {
	f, base := gdrivetest.Start(t)
	a := f.Add("", "a.txt", "text/plain", []byte("a"))
	b := f.Add("", "b.txt", "text/plain", []byte("b"))
	c := newConnector(t, base, f.Token(), gdrive.Config{Scope: gdrive.ScopeFile})
	src := connectors.Source{Items: []string{a}}
	token, err := c.StartToken(ctx(t), src)
	require.NoError(t, err)
	f.SetContent(a, []byte("a2"))
	f.SetContent(b, []byte("b2"))
	f.Trash(b)
	items, removed, _ := changes(t, c, src, token)
	require.Equal(t, []string{"a.txt"}, names(items))
	require.Empty(t, removed, "only picked files are reported")
}

func TestNewAndSources(t *testing.T) {
	_, err := gdrive.New(gdrive.Config{}, nil)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "no token source")
	_, err = gdrive.New(gdrive.Config{BaseURL: "ftp://x"}, rest.Static(apiary.NewSecret("ya29.x")))
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))

	h := newHarness(t, "all")
	for _, loc := range []string{"bucket/prefix", "folder:", "folder:a/b", "drive:x y", "folder:'or'"} {
		_, err := h.conn.List(ctx(t), connectors.Source{Location: loc}, "")
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%q", loc)
	}
	_, err = h.conn.List(ctx(t), h.src, "not a cursor")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	_, err = h.conn.Open(ctx(t), connectors.Item{ID: "../../about"})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	drawing := h.f.Add("", "sketch", gdrivetest.MimeDrawing, []byte("<svg/>"))
	_, err = h.conn.Open(ctx(t), connectors.Item{ID: drawing})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "a Drawing has no text export")
}

func TestFolderWalkIsBounded(t *testing.T) {
	f, base := gdrivetest.Start(t)
	top := f.Add("", "wide", gdrivetest.MimeFolder, nil)
	for i := range gdrive.MaxPendingFolders + 1 {
		f.Add(top, "dir-"+strconv.Itoa(i), gdrivetest.MimeFolder, nil)
	}
	c := newConnector(t, base, f.Token(), gdrive.Config{PageSize: gdrive.MaxPageSize})
	var err error
	for _, err = range connectors.All(ctx(t), c, connectors.Source{Location: "folder:" + top}, "") {
		if err != nil {
			break
		}
	}
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
	require.Contains(t, err.Error(), "subfolders as sources")
}
