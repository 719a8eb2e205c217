package github_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/github"
	"github.com/apiaryhq/apiary/connectors/rest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// listIDs lists src to the end, page by page, and returns the ids in order,
// failing on an id listed twice or a page over pageSize.
func listIDs(t *testing.T, c *github.Connector, src connectors.Source, pageSize int) []string {
	t.Helper()
	var ids []string
	seen := map[string]bool{}
	var cur connectors.Cursor
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000)
		page, err := c.List(testCtx(t), src, cur)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Items), pageSize)
		for _, it := range page.Items {
			require.False(t, seen[it.ID], "%s listed twice", it.ID)
			seen[it.ID] = true
			ids = append(ids, it.ID)
		}
		if page.Next == "" {
			return ids
		}
		cur = page.Next
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// seedTree commits n files in nested directories of testRepo and returns
// their ids, with the README's.
func seedTree(h *harness, n int) []string {
	ids := []string{github.ItemID(testRepo, "", "README.md")}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	h.f.change(testRepo, "main", func(files map[string]fileEntry) {
		for i := range n {
			p := fmt.Sprintf("src/d%d/e%d/file-%02d.go", i%3, i%2, i)
			files[p] = fileEntry{mode: "100644", sha: h.f.blob([]byte(fmt.Sprintf("package x // %d", i)))}
			ids = append(ids, github.ItemID(testRepo, "", p))
		}
	})
	return ids
}

func TestTruncatedTreeIsWalkedLevelByLevel(t *testing.T) {
	t.Parallel()
	for _, truncate := range []bool{false, true} {
		t.Run(fmt.Sprintf("truncated=%v", truncate), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, truncate)
			want := seedTree(h, 20)
			got := listIDs(t, h.conn, h.Source(), testPageSize)
			require.Empty(t, cmp.Diff(sorted(want), sorted(got)), "every file is listed once, nothing else")
			if truncate {
				require.Positive(t, h.f.count("tree"), "a truncated tree is walked by non-recursive tree calls")
			} else {
				require.Zero(t, h.f.count("tree"), "a whole recursive tree needs no other tree call")
			}
		})
	}
}

func TestSubmodulesAndSymlinksAreSkipped(t *testing.T) {
	t.Parallel()
	for _, truncate := range []bool{false, true} {
		t.Run(fmt.Sprintf("truncated=%v", truncate), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, truncate)
			got := listIDs(t, h.conn, h.Source(), testPageSize)
			require.Equal(t, []string{github.ItemID(testRepo, "", "README.md")}, got, "the symbolic link docs/link.md and the submodule vendor/lib are not files")

			// Nor does the change feed name them when they change.
			tok, err := h.conn.StartToken(testCtx(t), h.Source())
			require.NoError(t, err)
			h.f.mu.Lock()
			h.f.change(testRepo, "main", func(files map[string]fileEntry) {
				files["docs/link.md"] = fileEntry{mode: "120000", sha: h.f.blob([]byte("../other.md"))}
				files["vendor/lib"] = fileEntry{mode: "160000", sha: gitHash("commit", []byte("moved on"))}
				files["vendor/other"] = fileEntry{mode: "160000", sha: gitHash("commit", []byte("added"))}
			})
			h.f.mu.Unlock()
			ch := allChanges(t, h.conn, h.Source(), tok)
			require.Empty(t, ch.Items)
			require.Empty(t, ch.Removed)
		})
	}
}

// allChanges runs Changes from token to the end of its pages.
func allChanges(t *testing.T, c *github.Connector, src connectors.Source, token connectors.Cursor) connectors.Changes {
	t.Helper()
	var all connectors.Changes
	cur := token
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000)
		ch, err := c.Changes(testCtx(t), src, cur)
		require.NoError(t, err)
		all.Items = append(all.Items, ch.Items...)
		all.Removed = append(all.Removed, ch.Removed...)
		if ch.Next == "" {
			require.NotEmpty(t, ch.Token)
			all.Token = ch.Token
			return all
		}
		cur = ch.Next
	}
}

func ids(items []connectors.Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.ID)
	}
	return out
}

func TestUnchangedRefIsAskedConditionally(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	tok, err := h.conn.StartToken(testCtx(t), h.Source())
	require.NoError(t, err)

	before := h.f.count("commits 304")
	ch, err := h.conn.Changes(testCtx(t), h.Source(), tok)
	require.NoError(t, err)
	require.Empty(t, ch.Items)
	require.Empty(t, ch.Removed)
	require.Empty(t, ch.Next)
	require.Equal(t, before+1, h.f.count("commits 304"), "an unchanged ref answers 304 to its ETag")
	require.Zero(t, h.f.count("tree"), "an unchanged ref reads no tree")

	id := h.Put(t, "new", []byte("a new file"))
	ch = allChanges(t, h.conn, h.Source(), ch.Token)
	require.Equal(t, []string{id}, ids(ch.Items))
	require.Equal(t, before+1, h.f.count("commits 304"), "a changed ref answers in full")
}

func TestTreeDiffSkipsUnchangedSubtrees(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	seedTree(h, 30)
	tok, err := h.conn.StartToken(testCtx(t), h.Source())
	require.NoError(t, err)
	h.f.put(testRepo, "src/d1/e0/file-04.go", []byte("package x // changed"))
	calls := h.f.count("tree")
	ch := allChanges(t, h.conn, h.Source(), tok)
	require.Equal(t, []string{github.ItemID(testRepo, "", "src/d1/e0/file-04.go")}, ids(ch.Items))
	require.Empty(t, ch.Removed)
	// root, src and src/d1 and src/d1/e0, old and new: 8 trees; not the
	// unchanged src/d0, src/d2, src/d1/e1.
	require.Equal(t, 8, h.f.count("tree")-calls, "only the trees on the changed path are read")
}

func TestTreeDiffFindsRenameAsRemoveAndAdd(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	old := h.Put(t, "moved", []byte("same content, new place"))
	tok, err := h.conn.StartToken(testCtx(t), h.Source())
	require.NoError(t, err)
	h.f.rename(testRepo, itemPath("moved"), "archive/moved.txt")

	ch := allChanges(t, h.conn, h.Source(), tok)
	require.Equal(t, []string{old}, ch.Removed)
	require.Len(t, ch.Items, 1)
	it := ch.Items[0]
	require.Equal(t, github.ItemID(testRepo, "", "archive/moved.txt"), it.ID)
	require.Equal(t, gitHash("blob", []byte("same content, new place")), it.Version, "the version is the blob sha, unchanged by a move")
	require.Equal(t, "moved.txt", it.Name)

	// A directory replaced by a file of its name: the files under it are
	// removed, the file is added.
	h.f.mu.Lock()
	h.f.change(testRepo, "main", func(files map[string]fileEntry) {
		delete(files, "archive/moved.txt")
		files["archive"] = fileEntry{mode: "100644", sha: h.f.blob([]byte("now a file"))}
	})
	h.f.mu.Unlock()
	ch = allChanges(t, h.conn, h.Source(), ch.Token)
	require.Equal(t, []string{github.ItemID(testRepo, "", "archive/moved.txt")}, ch.Removed)
	require.Equal(t, []string{github.ItemID(testRepo, "", "archive")}, ids(ch.Items))
}

func TestChangesPageAndResume(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	tok, err := h.conn.StartToken(testCtx(t), h.Source())
	require.NoError(t, err)
	want := seedTree(h, 11)[1:]
	h.f.remove(testRepo, "README.md")
	pages := 0
	var got, removed []string
	for cur := tok; ; pages++ {
		ch, err := h.conn.Changes(testCtx(t), h.Source(), cur)
		require.NoError(t, err)
		require.LessOrEqual(t, len(ch.Items)+len(ch.Removed), testPageSize)
		got = append(got, ids(ch.Items)...)
		removed = append(removed, ch.Removed...)
		if ch.Next == "" {
			break
		}
		cur = ch.Next
	}
	require.GreaterOrEqual(t, pages, 2, "changes over a page are paged")
	require.Empty(t, cmp.Diff(sorted(want), sorted(got)))
	require.Equal(t, []string{github.ItemID(testRepo, "", "README.md")}, removed)
}

func TestPrefixRestrictsToSubtree(t *testing.T) {
	t.Parallel()
	for _, truncate := range []bool{false, true} {
		t.Run(fmt.Sprintf("truncated=%v", truncate), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, truncate)
			all := seedTree(h, 12)
			var want []string
			for _, id := range all {
				if strings.Contains(id, ":src/d1/") {
					want = append(want, id)
				}
			}
			require.NotEmpty(t, want)
			src := connectors.Source{Location: testRepo + ":src/d1"}
			got := listIDs(t, h.conn, src, testPageSize)
			require.Empty(t, cmp.Diff(sorted(want), sorted(got)))

			tok, err := h.conn.StartToken(testCtx(t), src)
			require.NoError(t, err)
			h.f.put(testRepo, "src/d0/e0/file-00.go", []byte("outside the prefix"))
			h.f.put(testRepo, "src/d1/e1/file-01.go", []byte("inside the prefix"))
			ch := allChanges(t, h.conn, src, tok)
			require.Equal(t, []string{github.ItemID(testRepo, "", "src/d1/e1/file-01.go")}, ids(ch.Items))
		})
	}
}

func TestRefSourceListsAndOpensAtTheRef(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	h.f.put(testRepo, "notes.md", []byte("as tagged"))
	h.f.tag(testRepo, "v1.0")
	h.f.put(testRepo, "notes.md", []byte("after the tag"))

	src := connectors.Source{Location: testRepo + "@v1.0"}
	got := listIDs(t, h.conn, src, testPageSize)
	id := github.ItemID(testRepo, "v1.0", "notes.md")
	require.Equal(t, "octo/docs@v1.0:notes.md", id)
	require.Contains(t, got, id)

	c, err := h.conn.Open(testCtx(t), connectors.Item{ID: id, Size: -1})
	require.NoError(t, err)
	body, err := io.ReadAll(c.Body)
	require.NoError(t, err)
	require.NoError(t, c.Body.Close())
	require.Equal(t, "as tagged", string(body), "an id at a ref opens the file at that ref")
	require.Equal(t, gitHash("blob", []byte("as tagged")), c.Version)
	require.Empty(t, c.ContentType, "GitHub's raw media type says nothing of the file")
	require.Equal(t, "application/vnd.github.raw+json", h.f.headers["blob"])

	_, err = h.conn.List(testCtx(t), connectors.Source{Location: testRepo + "@no-such-branch"}, "")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "an unknown ref: %v", err)
}

func TestOpenUnchangedFetchesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	id := h.Put(t, "a", []byte("content"))
	sha := gitHash("blob", []byte("content"))
	_, err := h.conn.Open(testCtx(t), connectors.Item{ID: id, Version: sha, Size: 7, Seen: sha})
	require.ErrorIs(t, err, connectors.ErrNotModified)
	require.Zero(t, h.f.count("blob")+h.f.count("contents"), "no request for an item seen at its version")
}

func TestPrimaryRateLimitWaitsUntilReset(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	h.f.rateLimit(90*time.Second, true)
	_, err := h.conn.List(testCtx(t), h.Source(), "")
	require.Equal(t, apiary.KindRateLimited, apiary.KindOf(err))
	d, ok := apiary.RetryDelay(err)
	require.True(t, ok)
	require.Equal(t, 90*time.Second, d, "the delay runs to x-ratelimit-reset")

	h.f.rateLimit(48*time.Hour, true)
	_, err = h.conn.List(testCtx(t), h.Source(), "")
	d, _ = apiary.RetryDelay(err)
	require.Equal(t, connectors.MaxRetryAfter, d, "a reset far away is capped")
}

func TestInvisibleRepositoryIsGone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	h.f.addRepo("octo/secret", "main", false)
	h.f.put("octo/secret", "x.md", []byte("private"))
	_, err := h.conn.List(testCtx(t), connectors.Source{Location: "octo/secret"}, "")
	require.ErrorIs(t, err, connectors.ErrGone)
	require.Contains(t, err.Error(), "not found or not visible to this token")
	require.NotContains(t, err.Error(), "Not Found", "GitHub's message is not quoted")
}

func TestEmptyRepositoryListsNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	h.f.addRepo("octo/empty", "main", true)
	src := connectors.Source{Location: "octo/empty"}
	page, err := h.conn.List(testCtx(t), src, "")
	require.NoError(t, err, "GitHub's 409 for an empty repository is an empty listing")
	require.Empty(t, page.Items)
	require.Empty(t, page.Next)

	// Its change feed starts empty and sees the first commit.
	tok, err := h.conn.StartToken(testCtx(t), src)
	require.NoError(t, err)
	h.f.put("octo/empty", "first.md", []byte("first"))
	ch := allChanges(t, h.conn, src, tok)
	require.Equal(t, []string{"octo/empty:first.md"}, ids(ch.Items))
}

func TestAllListsEveryInstallationRepository(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	h.f.mu.Lock()
	h.f.maxPerPage = 2 // several pages of repositories
	h.f.mu.Unlock()
	h.f.addRepo("octo/empty", "main", true)
	h.f.addRepo("octo/hidden", "main", false)
	h.f.put("octo/hidden", "x.md", []byte("not in the installation"))
	for _, name := range []string{"acme/one", "acme/two", "acme/three"} {
		h.f.addRepo(name, "trunk", true)
		h.f.put(name, "README.md", []byte(name))
		h.f.put(name, "docs/guide.md", []byte("guide of "+name))
	}
	want := []string{"octo/docs:README.md"}
	for _, name := range []string{"acme/one", "acme/two", "acme/three"} {
		want = append(want, name+":README.md", name+":docs/guide.md")
	}
	for _, loc := range []string{"", "all"} {
		got := listIDs(t, h.conn, connectors.Source{Location: loc}, testPageSize)
		require.Empty(t, cmp.Diff(sorted(want), sorted(got)))
	}
	// One List call reads each page of repositories once (5 repositories,
	// 2 a page).
	before := h.f.count("installation")
	page, err := h.f.connector(t, 100, testMaxBytes).List(testCtx(t), connectors.Source{Location: "all"}, "")
	require.NoError(t, err)
	require.Len(t, page.Items, len(want))
	require.Empty(t, page.Next)
	require.Equal(t, 3, h.f.count("installation")-before)

	capped := listIDs(t, h.conn, connectors.Source{Location: "all", MaxItems: 3}, testPageSize)
	require.Len(t, capped, 3, "MaxItems caps the listing")

	// The feed diffs one repository: for every repository, Changes asks
	// for a full listing.
	tok, err := h.conn.StartToken(testCtx(t), connectors.Source{Location: "all"})
	require.NoError(t, err)
	_, err = h.conn.Changes(testCtx(t), connectors.Source{Location: "all"}, tok)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "the change feed is per repository")
}

func TestChangeTokenIsChecked(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	tok, err := h.conn.StartToken(testCtx(t), h.Source())
	require.NoError(t, err)
	for _, bad := range []connectors.Cursor{"", "e30", "not base64!"} {
		_, err := h.conn.Changes(testCtx(t), h.Source(), bad)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "token %q", bad)
	}
	_, err = h.conn.Changes(testCtx(t), connectors.Source{Location: testRepo + "@other"}, tok)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "another source's token")

	// A ref deleted since: GitHub's 422, and the caller lists in full.
	h.f.mu.Lock()
	delete(h.f.repos[testRepo].refs, "main")
	h.f.repos[testRepo].refs["trunk"] = "0000000000000000000000000000000000000000"
	h.f.mu.Unlock()
	_, err = h.conn.Changes(testCtx(t), h.Source(), tok)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
}

func TestOpenByIDChecksSizeBeforeFetching(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	id := h.Put(t, "huge", make([]byte, 2<<20)) // over the cap, and over contents' 1 MB inline limit
	_, err := h.conn.Open(testCtx(t), connectors.Item{ID: id, Size: -1})
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%v", err)
	require.Zero(t, h.f.count("blob"), "the blob of a file known too large is not asked for")
}

func TestErrorsHoldNoToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	h.ExpireCredential(t)
	_, err := h.conn.List(testCtx(t), h.Source(), "")
	require.Equal(t, apiary.KindUnauthenticated, apiary.KindOf(err))
	require.NotContains(t, err.Error(), fakeToken)
	require.NotContains(t, err.Error(), "Bad credentials", "GitHub's message is not quoted")
}

func TestPickedItemsAcrossRepositoriesAndRefs(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	h.f.addRepo("acme/site", "trunk", true)
	h.f.put("acme/site", "content/index.md", []byte("v1 index"))
	h.f.tag("acme/site", "v1")
	h.f.put("acme/site", "content/index.md", []byte("v2 index"))
	picks := []string{"acme/site@v1:content/index.md", "octo/docs:README.md", "acme/site:content/index.md"}
	var got []connectors.Item
	for it, err := range connectors.All(testCtx(t), h.conn, connectors.Source{Items: picks}, "") {
		require.NoError(t, err)
		got = append(got, it)
	}
	require.Equal(t, picks, ids(got))
	require.Equal(t, gitHash("blob", []byte("v1 index")), got[0].Version)
	require.Equal(t, gitHash("blob", []byte("v2 index")), got[2].Version)
	require.Equal(t, "index.md", got[0].Name)

	_, err := h.conn.List(testCtx(t), connectors.Source{Items: []string{"octo/docs"}}, "")
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "a picked id without a path")
	_, err = h.conn.List(testCtx(t), connectors.Source{Items: []string{"octo/docs:docs"}}, "")
	require.ErrorIs(t, err, connectors.ErrGone, "a directory is not a file")
}

func TestCursorIsChecked(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	seedTree(h, 10)
	page, err := h.conn.List(testCtx(t), h.Source(), "")
	require.NoError(t, err)
	require.NotEmpty(t, page.Next)
	require.NotContains(t, string(page.Next), fakeToken)
	for _, bad := range []connectors.Cursor{"not base64!", "e30", connectors.Cursor(strings.Repeat("A", 40))} {
		_, err := h.conn.List(testCtx(t), h.Source(), bad)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "cursor %q", bad)
	}
	_, err = h.conn.List(testCtx(t), connectors.Source{Location: "octo/other"}, page.Next)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "another source's cursor")
}

func TestParseSource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		loc  string
		want github.Location
		bad  bool
	}{
		{loc: "", want: github.Location{All: true}},
		{loc: "all", want: github.Location{All: true}},
		{loc: "octo/docs", want: github.Location{Repo: "octo/docs"}},
		{loc: "octo/docs@main", want: github.Location{Repo: "octo/docs", Ref: "main"}},
		{loc: "octo/docs@release/v1.2", want: github.Location{Repo: "octo/docs", Ref: "release/v1.2"}},
		{loc: "octo/docs:guides/", want: github.Location{Repo: "octo/docs", Prefix: "guides"}},
		{loc: "octo/my.repo_x@v1:a/b c", want: github.Location{Repo: "octo/my.repo_x", Ref: "v1", Prefix: "a/b c"}},
		{loc: "octo", bad: true},
		{loc: "octo/docs/extra", bad: true},
		{loc: "https://github.com/octo/docs", bad: true},
		{loc: "octo/docs@", bad: true},
		{loc: "octo/docs@a..b", bad: true},
		{loc: "octo/docs@a b", bad: true},
		{loc: "octo/docs:../etc", bad: true},
		{loc: "octo/docs:a//b", bad: true},
		{loc: "-octo/docs", bad: true},
	}
	for _, tt := range tests {
		got, err := github.ParseSource(tt.loc)
		if tt.bad {
			require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%q", tt.loc)
			continue
		}
		require.NoError(t, err, "%q", tt.loc)
		require.Equal(t, tt.want, got, "%q", tt.loc)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	c, err := github.New(github.Config{Now: func() time.Time { return now }}, rest.Static(apiary.NewSecret("t")))
	require.NoError(t, err)
	reset := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		kind   apiary.Kind
		delay  time.Duration
		gone   bool
		says   string
	}{
		{name: "bad credentials", status: 401, body: `{"message":"Bad credentials"}`, kind: apiary.KindUnauthenticated},
		{name: "primary 403", status: 403, header: http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {reset(5 * time.Minute)}}, kind: apiary.KindRateLimited, delay: 5 * time.Minute},
		{name: "primary 429", status: 429, header: http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {reset(time.Minute)}}, kind: apiary.KindRateLimited, delay: time.Minute},
		{name: "primary reset passed", status: 403, header: http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {reset(-time.Minute)}}, kind: apiary.KindRateLimited, delay: time.Second},
		{name: "primary reset far", status: 403, header: http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {reset(30 * time.Hour)}}, kind: apiary.KindRateLimited, delay: connectors.MaxRetryAfter},
		{name: "secondary retry-after", status: 403, header: http.Header{"Retry-After": {"42"}}, body: `{"message":"You have exceeded a secondary rate limit"}`, kind: apiary.KindRateLimited, delay: 42 * time.Second},
		{name: "secondary no header", status: 403, body: `{"message":"You have exceeded a secondary rate limit. Please wait."}`, kind: apiary.KindRateLimited, delay: time.Minute},
		{name: "secondary 429", status: 429, header: http.Header{"Retry-After": {"7"}}, kind: apiary.KindRateLimited, delay: 7 * time.Second},
		{name: "429 bare", status: 429, kind: apiary.KindRateLimited, delay: connectors.DefaultRetryAfter},
		{name: "forbidden", status: 403, header: http.Header{"X-Ratelimit-Remaining": {"4000"}}, body: `{"message":"Resource not accessible by integration"}`, kind: apiary.KindForbidden, says: "Contents"},
		{name: "not found", status: 404, body: `{"message":"Not Found"}`, kind: apiary.KindNotFound, gone: true, says: "not found or not visible to this token"},
		{name: "empty repository", status: 409, body: `{"message":"Git Repository is empty."}`, kind: apiary.KindNotFound, gone: true, says: "empty"},
		{name: "unprocessable", status: 422, body: `{"message":"No commit found for SHA: x"}`, kind: apiary.KindInvalid},
		{name: "server error", status: 502, kind: apiary.KindUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Header: tt.header}
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			err := c.Classify(resp, []byte(tt.body), "github: list octo/docs")
			require.Equal(t, tt.kind, apiary.KindOf(err), "%v", err)
			if tt.delay > 0 {
				d, ok := apiary.RetryDelay(err)
				require.True(t, ok)
				require.Equal(t, tt.delay, d)
			}
			require.Equal(t, tt.gone, connectorsIsGone(err))
			require.Contains(t, err.Error(), tt.says)
			if tt.body != "" {
				var msg struct{ Message string }
				rest.ErrorBody([]byte(tt.body), &msg)
				require.NotContains(t, err.Error(), msg.Message, "GitHub's message is not quoted")
			}
		})
	}
}

func connectorsIsGone(err error) bool { return errors.Is(err, connectors.ErrGone) }

func TestNewRefusesAGuardedBaseURL(t *testing.T) {
	t.Parallel()
	_, err := github.New(github.Config{BaseURL: "http://127.0.0.1:8080/api/v3"}, rest.Static(apiary.NewSecret("t")))
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	_, err = github.New(github.Config{BaseURL: "https://github.example.com/api/v3"}, rest.Static(apiary.NewSecret("t")))
	require.NoError(t, err, "a GitHub Enterprise Server on a public host")
}
