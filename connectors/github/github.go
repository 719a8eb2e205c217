// Package github is the GitHub connector: it lists the files of a
// repository at a branch or tag from its git tree and fetches them as git
// blobs, through GitHub's REST API (https://api.github.com, or GitHub
// Enterprise Server's https://HOST/api/v3) and the shared client of
// connectors/rest. It is a thin client of its own: no SDK.
//
// Credential. The token is a GitHub App's user access token or installation
// access token, asked of the rest.TokenSource per request. The App is given
// the read-only repository permissions "Contents" and "Metadata" and nothing
// else. A GitHub App and not an OAuth App: an OAuth App's scopes are coarse,
// and the only scope that reads private code ("repo") also grants writing
// to every repository the user can reach; a GitHub App's permissions are
// fine-grained (read-only Contents), and it is installed on the
// repositories the owner picks.
//
// What it promises:
//   - A source location is "owner/repo" (the default branch),
//     "owner/repo@ref" (a branch or a tag), either followed by
//     ":path/prefix" to list only that subtree (or that one file); "" or
//     "all" is every repository the token reaches, each at its default
//     branch, as GET /installation/repositories answers it (paged by its
//     Link header): this form needs an installation access token (a user
//     access token is refused by GitHub: name the repositories instead).
//   - An item is a file: a blob of the tree, not a submodule (mode 160000)
//     nor a symbolic link (mode 120000). Its ID is "owner/repo:path" for a
//     source at the default branch, "owner/repo@ref:path" for one naming a
//     ref: stable across commits. Its Version is the blob sha (the same
//     content has the same version everywhere), its Size the tree's, its
//     Name the file's base name (extraction reads the format from it).
//   - Listing resolves the ref to its commit sha (GET
//     /repos/{owner}/{repo}/commits/{ref} with the sha media type: one
//     small answer, for branches and tags alike; an unchanged ref asked
//     with If-None-Match answers 304, which GitHub does not count against
//     the rate limit), then reads the commit's tree with recursive=1 and
//     pages through it: each List page fetches that tree again (a tree is
//     immutable) and the cursor holds the commit sha and the position in
//     it. When GitHub answers "truncated": true (over 100,000 entries or 7
//     MB), the listing walks the tree one level at a time instead
//     (non-recursive tree calls), depth first: the cursor holds the stack
//     of the trees being read (their shas, paths and positions, as deep as
//     the directories nest), and one List call holds at most that stack's
//     trees in memory.
//   - A listing yields at most Source.MaxItems files (default
//     connectors.DefaultMaxItems, at most connectors.HardMaxItems); a page
//     holds at most Config.PageSize. An empty repository (GitHub's 409
//     "Git Repository is empty.") lists nothing.
//   - Open fetches the blob (GET /repos/{owner}/{repo}/git/blobs/{sha} with
//     the raw media type application/vnd.github.raw+json) by the item's
//     Version. An item without a Version (Open of an id alone) is looked up
//     at its ref first (GET /repos/{owner}/{repo}/contents/{path}?ref=, for
//     its blob sha and size), then fetched the same way. Item.Seen equal to
//     the blob sha is connectors.ErrNotModified, with no content fetched;
//     an item over Config.MaxBytes fails with TooLarge before its content
//     is asked for, and the body is bounded by the cap. Bytes pass through
//     as stored; the content type is left to extraction (GitHub answers
//     its own raw media type, which says nothing of the file).
//   - Source.Items lists the picked files ("owner/repo[@ref]:path" ids), in
//     order, each looked up by the contents endpoint: one that is gone
//     fails the listing with connectors.ErrGone.
//   - The change feed (connectors.ChangeFeed) is a tree diff by blob sha:
//     the token holds the ref's commit sha, its tree sha and the ref's
//     ETag. Changes asks the ref with If-None-Match (an unchanged ref is
//     free and yields nothing), else walks the old and the new trees
//     together one level at a time, skipping every subtree whose sha is
//     unchanged: a file whose blob sha differs or that is new is an item, a
//     path gone is removed (a rename is a removal and an addition). The
//     walk's stack is in Changes.Next, so that memory stays bounded. The
//     feed diffs one repository: for "all" and for picked items, StartToken
//     gives a token from which Changes fails with KindInvalid, so that the
//     caller lists in full.
//   - Errors are classified by Classify; they never quote GitHub's message
//     nor hold the token or a URL query.
package github

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/rest"
	"github.com/apiaryhq/apiary/internal/safehttp"
)

const (
	// DefaultBaseURL is GitHub's REST API root.
	DefaultBaseURL = "https://api.github.com"
	// APIVersion is the REST API version every request asks for
	// (X-GitHub-Api-Version).
	APIVersion = "2022-11-28"
	// DefaultPageSize is a List page's size when Config names none.
	DefaultPageSize = 500
	// MaxPageSize bounds Config.PageSize.
	MaxPageSize = 1000
	// DefaultMaxBytes is the size cap of one file when Config names none.
	DefaultMaxBytes = 64 << 20
	// reposPerPage is the page size asked of GET /installation/repositories
	// (GitHub's maximum).
	reposPerPage = 100
)

// Media types.
const (
	mediaJSON = "application/vnd.github+json"
	mediaRaw  = "application/vnd.github.raw+json"
	mediaSHA  = "application/vnd.github.sha"
)

// Config configures the GitHub connector. Zero values take the defaults.
type Config struct {
	// BaseURL is the REST API root. Default DefaultBaseURL; GitHub
	// Enterprise Server's is "https://HOST/api/v3". Any other than the
	// default passes the SSRF guard (internal/safehttp).
	BaseURL string
	// AllowPrivate lets a BaseURL on a private or loopback host through the
	// SSRF guard (a GitHub Enterprise Server on a private network; tests).
	AllowPrivate bool
	// HTTP makes the requests. Default: the guarded client of connectors/rest.
	HTTP *http.Client
	// PageSize is how many items one List page holds. Default
	// DefaultPageSize, at most MaxPageSize.
	PageSize int
	// MaxBytes caps one file's content. Default DefaultMaxBytes.
	MaxBytes int64
	// Now tells the time, for rate limit resets. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
	if c.PageSize <= 0 {
		c.PageSize = DefaultPageSize
	}
	c.PageSize = min(c.PageSize, MaxPageSize)
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Connector lists and fetches a GitHub App's repositories with one token
// source. Safe for concurrent use.
type Connector struct {
	cfg    Config
	client *rest.Client
}

var (
	_ connectors.Connector  = (*Connector)(nil)
	_ connectors.ChangeFeed = (*Connector)(nil)
)

// New returns a GitHub connector asking tok for its token at each request.
// A base URL the SSRF guard refuses is invalid.
func New(cfg Config, tok rest.TokenSource) (*Connector, error) {
	cfg.setDefaults()
	if cfg.BaseURL != DefaultBaseURL {
		if err := safehttp.CheckURL(cfg.BaseURL, cfg.AllowPrivate); err != nil {
			return nil, apiary.Wrap(err, apiary.KindInvalid, "github: base URL: %s", apiary.Message(err))
		}
	}
	c := &Connector{cfg: cfg}
	client, err := rest.New(rest.Config{
		Name:    "github",
		BaseURL: cfg.BaseURL,
		Token:   tok,
		Header: http.Header{
			"Accept":               {mediaJSON},
			"X-Github-Api-Version": {APIVersion},
			"User-Agent":           {"apiary-github-connector"},
		},
		Classify:     c.Classify,
		HTTP:         cfg.HTTP,
		AllowPrivate: cfg.AllowPrivate,
	})
	if err != nil {
		return nil, err
	}
	c.client = client
	return c, nil
}

// Location is a parsed source location.
type Location struct {
	// All is the "" or "all" form: every repository the token reaches.
	All bool
	// Repo is "owner/repo".
	Repo string
	// Ref is the branch or tag named after "@"; "" is the default branch.
	Ref string
	// Prefix restricts the listing to a subtree (or one file); "" is all.
	Prefix string
}

var (
	repoName = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$`)
	// badRef is what git's check-ref-format refuses in a ref name (and
	// ':', which separates the path).
	badRef = regexp.MustCompile(`\.\.|@\{|[\x00-\x20\x7f~^:?*\[\\]|^/|/$|\.lock$|^\.|/\.|//`)
)

// ParseSource reads a source location (see the package doc).
func ParseSource(loc string) (Location, error) {
	loc = strings.TrimSpace(loc)
	if loc == "" || loc == "all" {
		return Location{All: true}, nil
	}
	head, prefix, hasPrefix := strings.Cut(loc, ":")
	repo, ref, hasRef := strings.Cut(head, "@")
	l := Location{Repo: repo, Ref: ref, Prefix: strings.Trim(prefix, "/")}
	switch {
	case !repoName.MatchString(repo) || repo == "" || strings.HasSuffix(repo, "/.") || strings.HasSuffix(repo, "/.."):
		return Location{}, apiary.E(apiary.KindInvalid, "github: source %q is not \"owner/repo[@ref][:path]\" nor \"all\"", loc)
	case hasRef && (ref == "" || badRef.MatchString(ref)):
		return Location{}, apiary.E(apiary.KindInvalid, "github: source %q names an invalid branch or tag after '@'", loc)
	case hasPrefix && !validPath(l.Prefix, true):
		return Location{}, apiary.E(apiary.KindInvalid, "github: source %q names an invalid path after ':'", loc)
	}
	return l, nil
}

// validPath reports whether p is a relative slash-separated path without
// "." or ".." segments ("" only when empty is allowed).
func validPath(p string, empty bool) bool {
	if p == "" {
		return empty
	}
	if strings.ContainsAny(p, "\x00") {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// ItemID is the ID of the file at path in repo ("owner/repo"), listed at
// ref ("" for the default branch).
func ItemID(repo, ref, path string) string {
	if ref != "" {
		return repo + "@" + ref + ":" + path
	}
	return repo + ":" + path
}

func parseItemID(id string) (repo, ref, p string, err error) {
	head, p, ok := strings.Cut(id, ":")
	repo, ref, hasRef := strings.Cut(head, "@")
	if !ok || !repoName.MatchString(repo) || (hasRef && (ref == "" || badRef.MatchString(ref))) || !validPath(p, false) {
		return "", "", "", apiary.E(apiary.KindInvalid, "github: item id is not \"owner/repo[@ref]:path\"")
	}
	return repo, ref, p, nil
}

// treeEntry is one entry of a git tree answer.
type treeEntry struct {
	Path string `json:"path"`
	Mode string `json:"mode"`
	Type string `json:"type"`
	Sha  string `json:"sha"`
	Size int64  `json:"size"`
}

// isFile reports whether e is a file: a blob that is not a symbolic link
// (a submodule is of type "commit").
func (e *treeEntry) isFile() bool {
	return e != nil && e.Type == "blob" && e.Mode != "120000" && e.Mode != "160000"
}

func (e *treeEntry) isTree() bool { return e != nil && e.Type == "tree" }

type treeAnswer struct {
	Sha       string      `json:"sha"`
	Tree      []treeEntry `json:"tree"`
	Truncated bool        `json:"truncated"`
}

// tree fetches the tree of sha (a tree or a commit sha) in repo.
func (c *Connector) tree(ctx context.Context, repo, sha string, recursive bool) (*treeAnswer, error) {
	var q url.Values
	if recursive {
		q = url.Values{"recursive": {"1"}}
	}
	var t treeAnswer
	err := c.client.JSON(ctx, rest.Request{
		Path: "repos/" + repo + "/git/trees/" + sha, Query: q, What: "read a tree of " + repo,
	}, &t)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// defaultBranch is repo's default branch.
func (c *Connector) defaultBranch(ctx context.Context, repo string) (string, error) {
	var r struct {
		DefaultBranch string `json:"default_branch"`
	}
	if err := c.client.JSON(ctx, rest.Request{Path: "repos/" + repo, What: "read repository " + repo}, &r); err != nil {
		return "", err
	}
	if r.DefaultBranch == "" {
		return "", apiary.E(apiary.KindUnavailable, "github: read repository %s: the answer names no default branch", repo)
	}
	return r.DefaultBranch, nil
}

var shaForm = regexp.MustCompile(`^(?:[0-9a-f]{40}|[0-9a-f]{64})$`)

// commit resolves ref in repo to its commit sha. With etag (the ETag of an
// earlier answer) the request is conditional: unchanged is true when
// GitHub answers 304 (which its rate limit does not count), and sha is "".
func (c *Connector) commit(ctx context.Context, repo, ref, etag string) (sha, newETag string, unchanged bool, err error) {
	h := http.Header{"Accept": {mediaSHA}}
	if etag != "" {
		h.Set("If-None-Match", etag)
	}
	resp, err := c.client.Do(ctx, rest.Request{
		Path: "repos/" + repo + "/commits/" + ref, Header: h, What: "resolve the ref of " + repo,
	})
	if err != nil {
		return "", "", false, err
	}
	defer rest.Drain(resp)
	switch resp.StatusCode {
	case http.StatusNotModified:
		return "", etag, true, nil
	case http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return "", "", false, apiary.E(apiary.KindInvalid, "github: resolve the ref of %s: the repository was renamed or transferred: name its new owner/repo", repo)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	sha = strings.TrimSpace(string(b))
	if err != nil || resp.StatusCode != http.StatusOK || !shaForm.MatchString(sha) {
		return "", "", false, apiary.E(apiary.KindUnavailable, "github: resolve the ref of %s: the answer is not a commit sha", repo)
	}
	newETag = resp.Header.Get("ETag")
	if newETag == "" {
		newETag = `"` + sha + `"`
	}
	return sha, newETag, false, nil
}

// commitTree is the root tree sha of commit sha in repo.
func (c *Connector) commitTree(ctx context.Context, repo, sha string) (string, error) {
	var cm struct {
		Tree struct {
			Sha string `json:"sha"`
		} `json:"tree"`
	}
	if err := c.client.JSON(ctx, rest.Request{Path: "repos/" + repo + "/git/commits/" + sha, What: "read a commit of " + repo}, &cm); err != nil {
		return "", err
	}
	if !shaForm.MatchString(cm.Tree.Sha) {
		return "", apiary.E(apiary.KindUnavailable, "github: read a commit of %s: the answer names no tree", repo)
	}
	return cm.Tree.Sha, nil
}

// errEmptyRepo is the cause of GitHub's 409 "Git Repository is empty."; an
// empty repository's items are gone (errors.Is ErrGone), its listing is
// empty.
var errEmptyRepo error = emptyRepo{}

type emptyRepo struct{}

func (emptyRepo) Error() string { return "github: the repository is empty" }

// Is makes an empty repository's errors gone.
func (emptyRepo) Is(target error) bool { return target == connectors.ErrGone }

func isEmptyRepo(err error) bool { return errors.As(err, new(emptyRepo)) }

func (c *Connector) now() time.Time { return c.cfg.Now() }

func sourceHash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// validWalk reports whether every sha of a walk's stack is a sha (a cursor
// is not trusted to name request paths).
func validWalk(stack []frame) bool {
	for _, f := range stack {
		if (f.Old != "" && !shaForm.MatchString(f.Old)) || (f.New != "" && !shaForm.MatchString(f.New)) || f.Next < 0 || !validPath(f.Path, true) {
			return false
		}
	}
	return true
}

// Classify reads GitHub's non-2xx answer to the request named what:
//   - 401: unauthenticated (bad credentials: the token expired or was
//     revoked);
//   - 403 or 429 with x-ratelimit-remaining 0 (the primary rate limit):
//     rate limited until x-ratelimit-reset (epoch seconds), at most
//     connectors.MaxRetryAfter;
//   - 403 or 429 with Retry-After, or saying "secondary rate limit": rate
//     limited for Retry-After (a minute when it names none); another 429
//     too (connectors.DefaultRetryAfter);
//   - another 403: forbidden (the App lacks Contents read access, or an
//     organization's policy refuses it);
//   - 404: gone, "not found or not visible to this token" (GitHub answers
//     404 for a private repository the token may not see);
//   - 409: the repository is empty (gone; a listing of it is empty);
//   - 422: invalid (a ref or sha that names no commit);
//   - 5xx: unavailable; the rest as connectors.ClassifyStatus.
//
// GitHub's message is read, never quoted.
func (c *Connector) Classify(resp *http.Response, body []byte, what string) error {
	var e struct {
		Message string `json:"message"`
	}
	rest.ErrorBody(body, &e)
	h := resp.Header
	switch s := resp.StatusCode; s {
	case http.StatusForbidden, http.StatusTooManyRequests:
		if h.Get("X-Ratelimit-Remaining") == "0" {
			d := connectors.DefaultRetryAfter
			if reset, err := strconv.ParseInt(h.Get("X-Ratelimit-Reset"), 10, 64); err == nil {
				d = min(max(time.Unix(reset, 0).Sub(c.now()), time.Second), connectors.MaxRetryAfter)
			}
			return connectors.RetryAfter(d, "%s: GitHub's rate limit for this token is spent until it resets", what)
		}
		if d := connectors.ParseRetryAfter(h, c.now()); d > 0 {
			return connectors.RetryAfter(d, "%s: GitHub's secondary rate limit", what)
		}
		if strings.Contains(strings.ToLower(e.Message), "secondary rate limit") {
			return connectors.RetryAfter(time.Minute, "%s: GitHub's secondary rate limit", what)
		}
		if s == http.StatusTooManyRequests {
			return connectors.RetryAfter(0, "%s: GitHub is rate limiting", what)
		}
		return apiary.E(apiary.KindForbidden, "%s: GitHub refused the token access (the GitHub App needs read access to Contents and Metadata, and the repository must be among its installation's)", what)
	case http.StatusUnauthorized:
		return apiary.E(apiary.KindUnauthenticated, "%s: GitHub refused the token (bad credentials): it may have expired or been revoked", what)
	case http.StatusNotFound:
		return connectors.Gone("%s: not found or not visible to this token", what)
	case http.StatusConflict:
		return apiary.Wrap(errEmptyRepo, apiary.KindNotFound, "%s: the repository is empty", what)
	case http.StatusUnprocessableEntity:
		return apiary.E(apiary.KindInvalid, "%s: GitHub found no such ref or commit", what)
	}
	return connectors.ClassifyStatus(resp, what)
}

// frame is one tree of a walk: the old and the new sha of the tree at Path
// ("" on a side where there is none: a listing has no old side), and how
// many of its merged entries are done.
type frame struct {
	Old  string `json:"o,omitempty"`
	New  string `json:"n,omitempty"`
	Path string `json:"p,omitempty"`
	Next int    `json:"i,omitempty"`
}

// pair is an entry name with its old and new entries.
type pair struct {
	name     string
	old, new *treeEntry
}

// walk is a depth-first walk of one or two trees of a repository, one level
// at a time, skipping subtrees whose sha is the same on both sides. Its
// stack is the state kept in a cursor; levels holds the entries of the
// stack's trees fetched in this call (nil until needed).
type walk struct {
	c      *Connector
	repo   string
	prefix string
	stack  []frame
	levels [][]pair
}

func newWalk(c *Connector, repo, prefix string, stack []frame) *walk {
	return &walk{c: c, repo: repo, prefix: prefix, stack: stack, levels: make([][]pair, len(stack))}
}

// inScope reports whether the entry at p (a tree when dir) is under the
// walk's prefix or on the way to it.
func (w *walk) inScope(p string, dir bool) bool {
	return w.prefix == "" || p == w.prefix || strings.HasPrefix(p, w.prefix+"/") || (dir && strings.HasPrefix(w.prefix, p+"/"))
}

func (w *walk) load(ctx context.Context, f frame) ([]pair, error) {
	byName := map[string]*pair{}
	for side, sha := range []string{f.Old, f.New} {
		if sha == "" {
			continue
		}
		t, err := w.c.tree(ctx, w.repo, sha, false)
		if err != nil {
			return nil, err
		}
		for i := range t.Tree {
			e := &t.Tree[i]
			p := byName[e.Path]
			if p == nil {
				p = &pair{name: e.Path}
				byName[e.Path] = p
			}
			if side == 0 {
				p.old = e
			} else {
				p.new = e
			}
		}
	}
	out := make([]pair, 0, len(byName))
	for _, p := range byName {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b pair) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// step handles the next entry of the walk, calling file for a file added or
// changed and removed for a file gone; it returns false when the walk is
// over.
func (w *walk) step(ctx context.Context, file func(p string, e *treeEntry), removed func(p string)) (bool, error) {
	for len(w.stack) > 0 {
		top := len(w.stack) - 1
		if w.levels[top] == nil {
			l, err := w.load(ctx, w.stack[top])
			if err != nil {
				return false, err
			}
			w.levels[top] = l
		}
		f := &w.stack[top]
		if f.Next >= len(w.levels[top]) {
			w.stack, w.levels = w.stack[:top], w.levels[:top]
			continue
		}
		pr := w.levels[top][f.Next]
		f.Next++
		p := pr.name
		if f.Path != "" {
			p = f.Path + "/" + pr.name
		}
		o, n := pr.old, pr.new
		if o != nil && n != nil && o.Sha == n.Sha && o.Type == n.Type && o.Mode == n.Mode {
			continue // unchanged, subtree and all
		}
		if w.inScope(p, false) {
			if o.isFile() && !n.isFile() {
				removed(p)
			}
			if n.isFile() && !(o.isFile() && o.Sha == n.Sha) {
				file(p, n)
			}
		}
		if (o.isTree() || n.isTree()) && w.inScope(p, true) {
			sub := frame{Path: p}
			if o.isTree() {
				sub.Old = o.Sha
			}
			if n.isTree() {
				sub.New = n.Sha
			}
			if sub.Old != sub.New {
				w.stack = append(w.stack, sub)
				w.levels = append(w.levels, nil)
			}
		}
		return true, nil
	}
	return false, nil
}

// listState is a listing's cursor.
type listState struct {
	Src    uint64 `json:"s"`
	Listed int    `json:"n,omitempty"`
	Done   bool   `json:"d,omitempty"`
	// "all": the repositories page being read ("" the first) and the
	// index in it of the next repository to start.
	ReposPage string `json:"rp,omitempty"`
	ReposNext int    `json:"ri,omitempty"`
	// The repository being listed ("" none) and the commit its ref named
	// when its listing started.
	Repo   string `json:"r,omitempty"`
	Commit string `json:"c,omitempty"`
	// Recursive: the position in the recursive tree; else Walk is the
	// stack of the one-level walk.
	Recursive bool    `json:"rec,omitempty"`
	Skip      int     `json:"k,omitempty"`
	Walk      []frame `json:"w,omitempty"`
	// Picked is the index of the next picked item.
	Picked int `json:"pi,omitempty"`
}

// maxItems is how many items a listing of src yields at most.
func maxItems(src connectors.Source) int {
	limit := src.MaxItems
	if limit <= 0 {
		limit = connectors.DefaultMaxItems
	}
	return min(limit, connectors.HardMaxItems)
}

func (c *Connector) decodeList(src connectors.Source, cur connectors.Cursor) (listState, error) {
	st := listState{Src: sourceHash(sourceKey(src))}
	if cur == "" {
		return st, nil
	}
	want := st.Src
	st = listState{}
	if !connectors.DecodeCursor(cur, &st) || st.Src != want || st.Listed < 0 || st.Skip < 0 || st.Picked < 0 || st.ReposNext < 0 ||
		(st.Repo != "" && (!repoName.MatchString(st.Repo) || !shaForm.MatchString(st.Commit))) || !validWalk(st.Walk) ||
		(st.ReposPage != "" && !strings.HasPrefix(st.ReposPage, c.cfg.BaseURL+"/")) {
		return listState{}, apiary.E(apiary.KindInvalid, "github: the cursor is not one of this source's")
	}
	return st, nil
}

// List returns the page of src's files that starts at cur.
func (c *Connector) List(ctx context.Context, src connectors.Source, cur connectors.Cursor) (connectors.Page, error) {
	st, err := c.decodeList(src, cur)
	if err != nil {
		return connectors.Page{}, err
	}
	limit := maxItems(src)
	if len(src.Items) > 0 {
		return c.listPicked(ctx, src, st, limit)
	}
	loc, err := ParseSource(src.Location)
	if err != nil {
		return connectors.Page{}, err
	}
	var page connectors.Page
	var repos reposPage
	room := func() int { return min(c.cfg.PageSize-len(page.Items), limit-st.Listed) }
	add := func(ref, p string, e *treeEntry) {
		st.Listed++
		page.Items = append(page.Items, connectors.Item{
			ID: ItemID(st.Repo, ref, p), Name: path.Base(p), Size: e.Size, Version: e.Sha,
		})
	}
	for !st.Done && room() > 0 {
		if st.Repo == "" {
			if err := c.startRepo(ctx, loc, &st, &repos); err != nil {
				return connectors.Page{}, err
			}
			continue
		}
		idRef := loc.Ref // the ref in ids: the location's, "" for the default branch
		more, err := c.listRepo(ctx, &st, loc.Prefix, room(), func(p string, e *treeEntry) { add(idRef, p, e) })
		if err != nil {
			if !isEmptyRepo(err) {
				return connectors.Page{}, err
			}
			more = false
		}
		if !more {
			c.endRepo(loc, &st)
		}
	}
	if !st.Done && st.Listed < limit {
		page.Next = connectors.EncodeCursor(st)
	}
	return page, nil
}

// startRepo starts the next repository of the listing: the source's, or the
// next of the installation's; it sets Done when there is none.
func (c *Connector) startRepo(ctx context.Context, loc Location, st *listState, repos *reposPage) error {
	repo, ref := loc.Repo, loc.Ref
	if loc.All {
		r, err := c.nextRepo(ctx, st, repos)
		if err != nil || r.FullName == "" {
			return err
		}
		repo, ref = r.FullName, r.DefaultBranch
	}
	st.Repo, st.Commit, st.Recursive, st.Skip, st.Walk = repo, "", false, 0, nil
	if ref == "" {
		var err error
		if ref, err = c.defaultBranch(ctx, repo); err != nil {
			return c.skipRepo(loc, st, err)
		}
	}
	sha, _, _, err := c.commit(ctx, repo, ref, "")
	if err != nil {
		return c.skipRepo(loc, st, err)
	}
	st.Commit = sha
	return nil
}

// skipRepo ends the repository that could not start: an empty one (or, in
// an "all" listing, one gone since the repositories were listed) lists
// nothing; other errors fail the listing.
func (c *Connector) skipRepo(loc Location, st *listState, err error) error {
	if isEmptyRepo(err) || (loc.All && errors.Is(err, connectors.ErrGone)) {
		c.endRepo(loc, st)
		return nil
	}
	return err
}

func (c *Connector) endRepo(loc Location, st *listState) {
	st.Repo, st.Commit, st.Recursive, st.Skip, st.Walk = "", "", false, 0, nil
	if loc.All {
		st.ReposNext++
	} else {
		st.Done = true
	}
}

// repository is an entry of GET /installation/repositories.
type repository struct {
	FullName      string `json:"full_name"`
	DefaultBranch string `json:"default_branch"`
}

// reposPage is a page of the installation's repositories, kept for the
// length of one List call.
type reposPage struct {
	url   string // "" the first page
	repos []repository
	next  string // the Link header's rel="next", "" none
	read  bool
}

// nextRepo returns the repository at st's position in the installation's
// repositories, moving to the next page (Link rel="next") at the end of
// one; a zero repository and st.Done when there is no more. page keeps the
// page last read.
func (c *Connector) nextRepo(ctx context.Context, st *listState, page *reposPage) (repository, error) {
	for {
		if !page.read || page.url != st.ReposPage {
			if err := c.readRepos(ctx, st.ReposPage, page); err != nil {
				return repository{}, err
			}
		}
		if st.ReposNext < len(page.repos) {
			r := page.repos[st.ReposNext]
			if !repoName.MatchString(r.FullName) {
				return repository{}, apiary.E(apiary.KindUnavailable, "github: list the installation's repositories: a repository without a name")
			}
			return r, nil
		}
		if page.next == "" || !c.client.SameOrigin(page.next) {
			st.Done = true
			return repository{}, nil
		}
		st.ReposPage, st.ReposNext = page.next, 0
	}
}

// readRepos reads the page of the installation's repositories at u ("" the
// first) into page.
func (c *Connector) readRepos(ctx context.Context, u string, page *reposPage) error {
	req := rest.Request{Path: "installation/repositories", Query: url.Values{"per_page": {strconv.Itoa(reposPerPage)}}, What: "list the installation's repositories"}
	if u != "" {
		req.Path, req.Query = u, nil
	}
	resp, err := c.client.Do(ctx, req)
	if err != nil {
		if apiary.KindOf(err) == apiary.KindForbidden {
			return apiary.Wrap(err, apiary.KindForbidden, "github: list every repository: this needs a GitHub App installation token; with a user access token, name the repositories (\"owner/repo\")")
		}
		return err
	}
	defer rest.Drain(resp)
	var ans struct {
		Repositories []repository `json:"repositories"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, rest.MaxJSON)).Decode(&ans) != nil {
		return apiary.E(apiary.KindUnavailable, "github: list the installation's repositories: the answer is not the JSON expected")
	}
	*page = reposPage{url: u, repos: ans.Repositories, next: nextLink(resp.Header.Get("Link")), read: true}
	return nil
}

// nextLink is the rel="next" URL of a Link header, "" when none.
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		u, params, ok := strings.Cut(part, ";")
		if !ok {
			continue
		}
		u = strings.TrimSpace(u)
		if !strings.HasPrefix(u, "<") || !strings.HasSuffix(u, ">") {
			continue
		}
		for _, p := range strings.Split(params, ";") {
			if k, v, _ := strings.Cut(strings.TrimSpace(p), "="); k == "rel" && slices.Contains(strings.Fields(strings.Trim(v, `"`)), "next") {
				return u[1 : len(u)-1]
			}
		}
	}
	return ""
}

// listRepo lists up to room files of st's repository from its position,
// passing each to add; more is false when the repository is done.
func (c *Connector) listRepo(ctx context.Context, st *listState, prefix string, room int, add func(p string, e *treeEntry)) (more bool, err error) {
	if st.Walk == nil {
		t, err := c.tree(ctx, st.Repo, st.Commit, true)
		if err != nil {
			return false, err
		}
		if t.Truncated && st.Recursive {
			return false, apiary.E(apiary.KindUnavailable, "github: read a tree of %s: GitHub truncated a tree it answered whole before", st.Repo)
		}
		if !t.Truncated {
			st.Recursive = true
			w := walk{prefix: prefix}
			i := st.Skip
			for ; i < len(t.Tree) && room > 0; i++ {
				if e := &t.Tree[i]; e.isFile() && w.inScope(e.Path, false) {
					add(e.Path, e)
					room--
				}
			}
			for i < len(t.Tree) && !(t.Tree[i].isFile() && w.inScope(t.Tree[i].Path, false)) {
				i++
			}
			st.Skip = i
			return i < len(t.Tree), nil
		}
		// Too large to answer at once: walk it a level at a time.
		st.Recursive, st.Skip, st.Walk = false, 0, []frame{{New: t.Sha}}
	}
	w := newWalk(c, st.Repo, prefix, st.Walk)
	defer func() { st.Walk = w.stack }()
	for room > 0 {
		ok, err := w.step(ctx, func(p string, e *treeEntry) { add(p, e); room-- }, func(string) {})
		if err != nil {
			return true, err
		}
		if !ok {
			return false, nil
		}
	}
	return len(w.stack) > 0, nil
}

// contents is the answer of GET /repos/{owner}/{repo}/contents/{path} for
// a file (a directory's is an array).
type contents struct {
	Type string `json:"type"`
	Sha  string `json:"sha"`
	Size int64  `json:"size"`
	Path string `json:"path"`
}

// lookup finds the file at p in repo at ref ("" the default branch).
func (c *Connector) lookup(ctx context.Context, repo, ref, p, what string) (contents, error) {
	var q url.Values
	if ref != "" {
		q = url.Values{"ref": {ref}}
	}
	var raw json.RawMessage
	if err := c.client.JSON(ctx, rest.Request{Path: "repos/" + repo + "/contents/" + p, Query: q, What: what}, &raw); err != nil {
		return contents{}, err
	}
	var f contents
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &f) != nil || f.Type != "file" || !shaForm.MatchString(f.Sha) {
		return contents{}, connectors.Gone("github: %s: not a file", what)
	}
	return f, nil
}

// listPicked lists the picked files from st.Picked.
func (c *Connector) listPicked(ctx context.Context, src connectors.Source, st listState, limit int) (connectors.Page, error) {
	var page connectors.Page
	for st.Picked < len(src.Items) && len(page.Items) < c.cfg.PageSize && st.Listed < limit {
		id := src.Items[st.Picked]
		repo, ref, p, err := parseItemID(id)
		if err != nil {
			return connectors.Page{}, err
		}
		f, err := c.lookup(ctx, repo, ref, p, "look up a picked file of "+repo)
		if err != nil {
			return connectors.Page{}, err
		}
		page.Items = append(page.Items, connectors.Item{ID: id, Name: path.Base(p), Size: f.Size, Version: f.Sha})
		st.Picked++
		st.Listed++
	}
	if st.Picked < len(src.Items) && st.Listed < limit {
		page.Next = connectors.EncodeCursor(st)
	}
	return page, nil
}

// Open streams the file of item: the blob of its Version, or the file's
// current blob at its ref when it has none.
func (c *Connector) Open(ctx context.Context, item connectors.Item) (*connectors.Content, error) {
	repo, ref, p, err := parseItemID(item.ID)
	if err != nil {
		return nil, err
	}
	what := "fetch a file of " + repo
	sha, size := item.Version, item.Size
	if !shaForm.MatchString(sha) {
		f, err := c.lookup(ctx, repo, ref, p, "look up a file of "+repo)
		if err != nil {
			return nil, err
		}
		sha, size = f.Sha, f.Size
	}
	if item.Seen != "" && item.Seen == sha {
		return nil, connectors.ErrNotModified
	}
	if size > c.cfg.MaxBytes {
		return nil, connectors.TooLarge("github: "+what, c.cfg.MaxBytes)
	}
	resp, err := c.client.Do(ctx, rest.Request{
		Path: "repos/" + repo + "/git/blobs/" + sha, Header: http.Header{"Accept": {mediaRaw}}, What: what,
	})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		rest.Drain(resp)
		return nil, apiary.E(apiary.KindUnavailable, "github: %s: unexpected status %d", what, resp.StatusCode)
	}
	content, err := rest.Content(resp, c.cfg.MaxBytes, "github: "+what, sha)
	if err != nil {
		return nil, err
	}
	content.ContentType = item.ContentType
	return content, nil
}

// sourceKey identifies src in cursors and tokens (by its hash).
func sourceKey(src connectors.Source) string {
	return src.Location + "\x00" + strings.Join(src.Items, "\x00")
}

// feedToken is a change feed's token, and in Changes.Next the state of a
// diff in progress.
type feedToken struct {
	Src    uint64 `json:"s"`
	Full   bool   `json:"full,omitempty"` // not a repository's source: no feed
	Ref    string `json:"f"`
	Commit string `json:"c"`
	Tree   string `json:"t"`
	ETag   string `json:"e,omitempty"`
	// A diff in progress: the new commit, tree and ETag, and the walk.
	NewCommit string  `json:"nc,omitempty"`
	NewTree   string  `json:"nt,omitempty"`
	NewETag   string  `json:"ne,omitempty"`
	Walk      []frame `json:"w,omitempty"`
}

// feedSource parses src for the change feed; repo is false for a source
// that is not one repository's (every repository, picked items).
func feedSource(src connectors.Source) (loc Location, repo bool, err error) {
	loc, err = ParseSource(src.Location)
	return loc, err == nil && !loc.All && len(src.Items) == 0, err
}

// StartToken returns the token of src's ref now: its commit, tree and ETag.
func (c *Connector) StartToken(ctx context.Context, src connectors.Source) (connectors.Cursor, error) {
	loc, repo, err := feedSource(src)
	if err != nil {
		return "", err
	}
	tok := feedToken{Src: sourceHash(sourceKey(src)), Ref: loc.Ref}
	if !repo {
		tok.Full = true
		return connectors.EncodeCursor(tok), nil
	}
	if tok.Ref == "" {
		if tok.Ref, err = c.defaultBranch(ctx, loc.Repo); err != nil {
			return "", err
		}
	}
	tok.Commit, tok.ETag, _, err = c.commit(ctx, loc.Repo, tok.Ref, "")
	if isEmptyRepo(err) {
		return connectors.EncodeCursor(tok), nil // empty: everything is new from here
	}
	if err != nil {
		return "", err
	}
	if tok.Tree, err = c.commitTree(ctx, loc.Repo, tok.Commit); err != nil {
		return "", err
	}
	return connectors.EncodeCursor(tok), nil
}

// Changes returns a page of what changed in src's tree since token: files
// whose blob sha changed or that are new, and paths gone.
func (c *Connector) Changes(ctx context.Context, src connectors.Source, token connectors.Cursor) (connectors.Changes, error) {
	loc, repo, err := feedSource(src)
	if err != nil {
		return connectors.Changes{}, err
	}
	var tok feedToken
	ours := connectors.DecodeCursor(token, &tok) && tok.Src == sourceHash(sourceKey(src))
	switch {
	case ours && (tok.Full || !repo):
		return connectors.Changes{}, apiary.E(apiary.KindInvalid, "github: the change feed diffs one repository's tree (\"owner/repo[@ref][:path]\"): list this source in full")
	case !ours || tok.Ref == "" || badRef.MatchString(tok.Ref) || !validWalk(tok.Walk) ||
		!validWalk([]frame{{Old: tok.Tree, New: tok.NewTree}}) || (tok.Commit != "" && !shaForm.MatchString(tok.Commit)):
		return connectors.Changes{}, apiary.E(apiary.KindInvalid, "github: the change token is not one of this source's")
	}
	if tok.NewCommit == "" {
		sha, etag, unchanged, err := c.commit(ctx, loc.Repo, tok.Ref, tok.ETag)
		switch {
		case isEmptyRepo(err):
			sha, etag = "", ""
		case err != nil:
			if apiary.KindOf(err) == apiary.KindInvalid {
				return connectors.Changes{}, apiary.Wrap(err, apiary.KindInvalid, "github: the change feed's ref %s no longer names a commit: list the source in full", tok.Ref)
			}
			return connectors.Changes{}, err
		}
		if unchanged || sha == tok.Commit {
			tok.ETag = etag
			return connectors.Changes{Token: connectors.EncodeCursor(tok)}, nil
		}
		tok.NewCommit, tok.NewETag = sha, etag
		if sha != "" {
			if tok.NewTree, err = c.commitTree(ctx, loc.Repo, sha); err != nil {
				return connectors.Changes{}, err
			}
		} else {
			tok.NewCommit = "-" // emptied: every file is removed
		}
		tok.Walk = []frame{{Old: tok.Tree, New: tok.NewTree}}
	}
	var ch connectors.Changes
	w := newWalk(c, loc.Repo, loc.Prefix, tok.Walk)
	for len(ch.Items)+len(ch.Removed) < c.cfg.PageSize {
		ok, err := w.step(ctx, func(p string, e *treeEntry) {
			ch.Items = append(ch.Items, connectors.Item{ID: ItemID(loc.Repo, loc.Ref, p), Name: path.Base(p), Size: e.Size, Version: e.Sha})
		}, func(p string) {
			ch.Removed = append(ch.Removed, ItemID(loc.Repo, loc.Ref, p))
		})
		if err != nil {
			if errors.Is(err, connectors.ErrGone) && !isEmptyRepo(err) {
				return connectors.Changes{}, apiary.Wrap(err, apiary.KindInvalid, "github: a tree of the change feed is gone: list the source in full")
			}
			return connectors.Changes{}, err
		}
		if !ok {
			break
		}
	}
	tok.Walk = w.stack
	if len(tok.Walk) > 0 {
		ch.Next = connectors.EncodeCursor(tok)
		return ch, nil
	}
	next := feedToken{Src: tok.Src, Ref: tok.Ref, Commit: tok.NewCommit, Tree: tok.NewTree, ETag: tok.NewETag}
	if next.Commit == "-" {
		next.Commit = ""
	}
	ch.Token = connectors.EncodeCursor(next)
	return ch, nil
}
