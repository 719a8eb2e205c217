package github_test

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/connectortest"
	"github.com/apiaryhq/apiary/connectors/github"
	"github.com/apiaryhq/apiary/connectors/rest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeGitHub is a stateful fake of the part of GitHub's REST API (under
// GitHub Enterprise Server's /api/v3 root) the connector uses, over a
// content-addressed git object store whose shas are computed as git does
// (sha1 of "blob <len>\0" + content, of trees and of commits):
//
//   - GET /repos/{o}/{r} (default_branch), 404 for a repository the token
//     may not see;
//   - GET /repos/{o}/{r}/commits/{ref} with the sha media type (the commit
//     sha as text, ETag, 304 on If-None-Match; 422 for an unknown ref,
//     409 "Git Repository is empty.");
//   - GET /repos/{o}/{r}/git/commits/{sha};
//   - GET /repos/{o}/{r}/git/trees/{sha}[?recursive=1] (a tree or a commit
//     sha; recursive answers "truncated": true with a partial tree when
//     truncate is set);
//   - GET /repos/{o}/{r}/git/blobs/{sha} (raw bytes with the raw media
//     type, else JSON with base64 content);
//   - GET /repos/{o}/{r}/contents/{path}?ref= (a file's JSON, content inline
//     up to 1 MB; an array for a directory);
//   - GET /installation/repositories (paged by per_page, capped at
//     maxPerPage, with a Link header);
//
// checking the Bearer token (401 "Bad credentials") and the API version
// header, answering injected rate limits (primary: 403 with
// x-ratelimit-remaining 0 and x-ratelimit-reset; secondary: 429 with
// Retry-After), and counting the blob bytes served and the calls made.
type fakeGitHub struct {
	srv *httptest.Server

	mu           sync.Mutex
	token        string
	now          time.Time
	objects      map[string]gitObject
	repos        map[string]*fakeRepo
	installation []string // the repositories the token reaches, in order
	maxPerPage   int
	truncate     bool
	limits       []limit
	served       map[string]int64  // blob bytes written, by sha
	calls        map[string]int    // by endpoint ("commits", "commits 304", "tree", "tree recursive", "blob", "contents")
	headers      map[string]string // the last request's Accept, by endpoint
	commits      int
}

type gitObject struct {
	kind    string // blob, tree, commit
	data    []byte // a blob's content
	entries []gitEntry
	tree    string // a commit's tree
}

type gitEntry struct {
	name, mode, typ, sha string
	size                 int
}

// fakeRepo is a repository: branches and tags naming commits, and the
// files of each branch's head (path → mode and sha) to commit from.
type fakeRepo struct {
	defaultBranch string
	refs          map[string]string // branch or tag → commit sha
	files         map[string]map[string]fileEntry
}

type fileEntry struct{ mode, sha string }

type limit struct {
	d       time.Duration
	primary bool
}

const fakeToken = "ghs_fakeinstallationtoken"

func newFake(t *testing.T) *fakeGitHub {
	f := &fakeGitHub{
		token:      fakeToken,
		now:        time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC),
		objects:    map[string]gitObject{},
		repos:      map[string]*fakeRepo{},
		maxPerPage: 100,
		served:     map[string]int64{},
		calls:      map[string]int{},
		headers:    map[string]string{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGitHub) baseURL() string { return f.srv.URL + "/api/v3" }

func (f *fakeGitHub) connector(t *testing.T, pageSize int, maxBytes int64) *github.Connector {
	c, err := github.New(github.Config{
		BaseURL: f.baseURL(), AllowPrivate: true, PageSize: pageSize, MaxBytes: maxBytes,
		Now: func() time.Time { return f.now },
	}, rest.Static(apiary.NewSecret(fakeToken)))
	require.NoError(t, err)
	return c
}

func gitHash(kind string, body []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "%s %d\x00", kind, len(body))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// blob stores content and returns its sha. Callers hold mu.
func (f *fakeGitHub) blob(content []byte) string {
	sha := gitHash("blob", content)
	f.objects[sha] = gitObject{kind: "blob", data: content}
	return sha
}

// addRepo creates an empty repository (no commit yet) the token reaches.
func (f *fakeGitHub) addRepo(name, defaultBranch string, visible bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.repos[name] = &fakeRepo{defaultBranch: defaultBranch, refs: map[string]string{}, files: map[string]map[string]fileEntry{}}
	if visible {
		f.installation = append(f.installation, name)
	}
}

// change edits the files of branch in repo (set maps path → content, nil
// content deletes; a special mode is set by link and submodule) and
// commits. Callers hold mu.
func (f *fakeGitHub) change(repo, branch string, edit func(files map[string]fileEntry)) {
	r := f.repos[repo]
	files := maps.Clone(r.files[branch])
	if files == nil {
		files = map[string]fileEntry{}
	}
	edit(files)
	r.files[branch] = files
	tree := f.buildTree(files, "")
	f.commits++
	body := fmt.Sprintf("tree %s\n", tree)
	if parent := r.refs[branch]; parent != "" {
		body += "parent " + parent + "\n"
	}
	body += fmt.Sprintf("author Fake <fake@example.com> %d +0000\n\ncommit %d\n", f.now.Unix(), f.commits)
	sha := gitHash("commit", []byte(body))
	f.objects[sha] = gitObject{kind: "commit", tree: tree}
	r.refs[branch] = sha
}

// buildTree stores the tree of the files under dir and returns its sha.
func (f *fakeGitHub) buildTree(files map[string]fileEntry, dir string) string {
	subdirs := map[string]bool{}
	var entries []gitEntry
	for p, fe := range files {
		rel, ok := strings.CutPrefix(p, dir)
		if !ok {
			continue
		}
		if name, _, nested := strings.Cut(rel, "/"); nested {
			subdirs[name] = true
			continue
		}
		typ, size := "blob", 0
		if fe.mode == "160000" {
			typ = "commit"
		} else {
			size = len(f.objects[fe.sha].data)
		}
		entries = append(entries, gitEntry{name: rel, mode: fe.mode, typ: typ, sha: fe.sha, size: size})
	}
	for name := range subdirs {
		entries = append(entries, gitEntry{name: name, mode: "040000", typ: "tree", sha: f.buildTree(files, dir+name+"/")})
	}
	// git's order: a tree sorts as if its name ended in "/".
	key := func(e gitEntry) string {
		if e.typ == "tree" {
			return e.name + "/"
		}
		return e.name
	}
	slices.SortFunc(entries, func(a, b gitEntry) int { return strings.Compare(key(a), key(b)) })
	var body []byte
	for _, e := range entries {
		raw, _ := hex.DecodeString(e.sha)
		body = append(body, strings.TrimPrefix(e.mode, "0")+" "+e.name+"\x00"...)
		body = append(body, raw...)
	}
	sha := gitHash("tree", body)
	f.objects[sha] = gitObject{kind: "tree", entries: entries}
	return sha
}

// put commits content at p on repo's default branch.
func (f *fakeGitHub) put(repo, p string, content []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.repos[repo]
	f.change(repo, r.defaultBranch, func(files map[string]fileEntry) {
		files[p] = fileEntry{mode: "100644", sha: f.blob(content)}
	})
}

// remove commits the deletion of p on repo's default branch.
func (f *fakeGitHub) remove(repo, p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.change(repo, f.repos[repo].defaultBranch, func(files map[string]fileEntry) { delete(files, p) })
}

// rename commits the move of from to to on repo's default branch.
func (f *fakeGitHub) rename(repo, from, to string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.change(repo, f.repos[repo].defaultBranch, func(files map[string]fileEntry) {
		files[to] = files[from]
		delete(files, from)
	})
}

// tag points tag at the head of repo's default branch.
func (f *fakeGitHub) tag(repo, tag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.repos[repo]
	r.refs[tag] = r.refs[r.defaultBranch]
}

func (f *fakeGitHub) count(endpoint string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[endpoint]
}

func (f *fakeGitHub) rateLimit(d time.Duration, primary bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limits = append(f.limits, limit{d: d, primary: primary})
}

func (f *fakeGitHub) setTruncate(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.truncate = on
}

const docsURL = "https://docs.github.com/rest"

func ghError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"message": msg, "documentation_url": docsURL, "status": strconv.Itoa(status)})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(v)
}

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		ghError(w, http.StatusUnauthorized, "Bad credentials")
		return
	}
	if r.Header.Get("X-GitHub-Api-Version") != github.APIVersion {
		ghError(w, http.StatusBadRequest, "The requested API version is not supported")
		return
	}
	reset := f.now.Add(time.Hour).Unix()
	if len(f.limits) > 0 {
		l := f.limits[0]
		f.limits = f.limits[1:]
		if l.primary {
			w.Header().Set("X-Ratelimit-Limit", "5000")
			w.Header().Set("X-Ratelimit-Remaining", "0")
			w.Header().Set("X-Ratelimit-Used", "5000")
			w.Header().Set("X-Ratelimit-Resource", "core")
			w.Header().Set("X-Ratelimit-Reset", strconv.FormatInt(f.now.Add(l.d).Unix(), 10))
			ghError(w, http.StatusForbidden, "API rate limit exceeded for installation ID 1.")
			return
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(l.d/time.Second)))
		ghError(w, http.StatusTooManyRequests, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")
		return
	}
	w.Header().Set("X-Ratelimit-Limit", "5000")
	w.Header().Set("X-Ratelimit-Remaining", "4999")
	w.Header().Set("X-Ratelimit-Reset", strconv.FormatInt(reset, 10))
	p, ok := strings.CutPrefix(r.URL.Path, "/api/v3/")
	if !ok || r.Method != http.MethodGet {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	if p == "installation/repositories" {
		f.installationRepos(w, r)
		return
	}
	rest, ok := strings.CutPrefix(p, "repos/")
	parts := strings.SplitN(rest, "/", 3)
	if !ok || len(parts) < 2 {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	name := parts[0] + "/" + parts[1]
	repo := f.repos[name]
	if repo == nil || !slices.Contains(f.installation, name) {
		ghError(w, http.StatusNotFound, "Not Found") // private and not visible: GitHub says 404
		return
	}
	if len(parts) == 2 {
		writeJSON(w, f.repoJSON(name))
		return
	}
	sub := parts[2]
	switch {
	case strings.HasPrefix(sub, "commits/"):
		f.commitRef(w, r, repo, strings.TrimPrefix(sub, "commits/"))
	case strings.HasPrefix(sub, "git/commits/"):
		sha := strings.TrimPrefix(sub, "git/commits/")
		o, ok := f.objects[sha]
		if !ok || o.kind != "commit" {
			ghError(w, http.StatusNotFound, "Not Found")
			return
		}
		writeJSON(w, map[string]any{"sha": sha, "tree": map[string]string{"sha": o.tree, "url": f.baseURL() + "/repos/" + name + "/git/trees/" + o.tree}})
	case strings.HasPrefix(sub, "git/trees/"):
		f.tree(w, r, name, repo, strings.TrimPrefix(sub, "git/trees/"))
	case strings.HasPrefix(sub, "git/blobs/"):
		f.blobAnswer(w, r, name, strings.TrimPrefix(sub, "git/blobs/"))
	case strings.HasPrefix(sub, "contents/"):
		f.contents(w, r, name, repo, strings.TrimPrefix(sub, "contents/"))
	default:
		ghError(w, http.StatusNotFound, "Not Found")
	}
}

func (f *fakeGitHub) repoJSON(name string) map[string]any {
	owner, short, _ := strings.Cut(name, "/")
	return map[string]any{
		"id": len(name), "node_id": "R_" + name, "name": short, "full_name": name, "private": true,
		"owner":          map[string]any{"login": owner, "type": "Organization"},
		"default_branch": f.repos[name].defaultBranch, "url": f.baseURL() + "/repos/" + name,
	}
}

func (f *fakeGitHub) installationRepos(w http.ResponseWriter, r *http.Request) {
	f.calls["installation"]++
	perPage, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if perPage <= 0 {
		perPage = 30
	}
	perPage = min(perPage, f.maxPerPage)
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 1)
	last := max((len(f.installation)+perPage-1)/perPage, 1)
	var repos []map[string]any
	for i := (page - 1) * perPage; i < min(page*perPage, len(f.installation)); i++ {
		repos = append(repos, f.repoJSON(f.installation[i]))
	}
	link := func(n int, rel string) string {
		return fmt.Sprintf(`<%s/installation/repositories?per_page=%d&page=%d>; rel="%s"`, f.baseURL(), perPage, n, rel)
	}
	var links []string
	if page > 1 {
		links = append(links, link(page-1, "prev"), link(1, "first"))
	}
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	writeJSON(w, map[string]any{"total_count": len(f.installation), "repository_selection": "selected", "repositories": repos})
}

// resolve is the commit sha of ref (a branch, a tag or a commit sha).
func (f *fakeGitHub) resolve(repo *fakeRepo, ref string) (string, bool) {
	if sha, ok := repo.refs[ref]; ok {
		return sha, true
	}
	if o, ok := f.objects[ref]; ok && o.kind == "commit" {
		return ref, true
	}
	return "", false
}

func (f *fakeGitHub) commitRef(w http.ResponseWriter, r *http.Request, repo *fakeRepo, ref string) {
	f.calls["commits"]++
	if len(repo.refs) == 0 {
		ghError(w, http.StatusConflict, "Git Repository is empty.")
		return
	}
	sha, ok := f.resolve(repo, ref)
	if !ok {
		ghError(w, http.StatusUnprocessableEntity, "No commit found for SHA: "+ref)
		return
	}
	etag := `"` + sha + `"`
	w.Header().Set("ETag", etag)
	if r.Header.Get("Accept") != "application/vnd.github.sha" {
		writeJSON(w, map[string]any{"sha": sha, "commit": map[string]any{"tree": map[string]string{"sha": f.objects[sha].tree}}})
		return
	}
	if r.Header.Get("If-None-Match") == etag {
		f.calls["commits 304"]++
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.github.sha; charset=utf-8")
	fmt.Fprint(w, sha)
}

type treeJSON struct {
	Path string `json:"path"`
	Mode string `json:"mode"`
	Type string `json:"type"`
	Sha  string `json:"sha"`
	Size *int   `json:"size,omitempty"`
	URL  string `json:"url"`
}

func (f *fakeGitHub) tree(w http.ResponseWriter, r *http.Request, name string, repo *fakeRepo, sha string) {
	if len(repo.refs) == 0 {
		ghError(w, http.StatusConflict, "Git Repository is empty.")
		return
	}
	if c, ok := f.resolve(repo, sha); ok {
		sha = f.objects[c].tree
	}
	o, ok := f.objects[sha]
	if !ok || o.kind != "tree" {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	_, recursive := r.URL.Query()["recursive"]
	if recursive {
		f.calls["tree recursive"]++
	} else {
		f.calls["tree"]++
	}
	var out []treeJSON
	var walk func(sha, dir string)
	walk = func(sha, dir string) {
		for _, e := range f.objects[sha].entries {
			j := treeJSON{Path: dir + e.name, Mode: e.mode, Type: e.typ, Sha: e.sha}
			switch e.typ {
			case "blob":
				j.Size = &e.size
				j.URL = f.baseURL() + "/repos/" + name + "/git/blobs/" + e.sha
			case "tree":
				j.URL = f.baseURL() + "/repos/" + name + "/git/trees/" + e.sha
			}
			out = append(out, j)
			if recursive && e.typ == "tree" {
				walk(e.sha, dir+e.name+"/")
			}
		}
	}
	walk(sha, "")
	truncated := false
	if recursive && f.truncate && len(out) > 2 {
		out, truncated = out[:2], true
	}
	writeJSON(w, map[string]any{"sha": sha, "url": f.baseURL() + "/repos/" + name + "/git/trees/" + sha, "tree": out, "truncated": truncated})
}

func (f *fakeGitHub) blobAnswer(w http.ResponseWriter, r *http.Request, name, sha string) {
	f.calls["blob"]++
	f.headers["blob"] = r.Header.Get("Accept")
	o, ok := f.objects[sha]
	if !ok || o.kind != "blob" {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	w.Header().Set("ETag", `"`+sha+`"`)
	if r.Header.Get("Accept") != "application/vnd.github.raw+json" {
		writeJSON(w, map[string]any{
			"sha": sha, "node_id": "B_" + sha, "size": len(o.data), "url": f.baseURL() + "/repos/" + name + "/git/blobs/" + sha,
			"content": base64.StdEncoding.EncodeToString(o.data), "encoding": "base64",
		})
		return
	}
	w.Header().Set("Content-Type", "application/vnd.github.raw+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(o.data)))
	// Written in chunks, unlocked, so that a client that stops reading is
	// seen stopping (served counts what was written).
	f.mu.Unlock()
	defer f.mu.Lock()
	for data := o.data; len(data) > 0; {
		n := min(len(data), 32<<10)
		if _, err := w.Write(data[:n]); err != nil {
			return
		}
		f.mu.Lock()
		f.served[sha] += int64(n)
		f.mu.Unlock()
		data = data[n:]
	}
}

func (f *fakeGitHub) contents(w http.ResponseWriter, r *http.Request, name string, repo *fakeRepo, p string) {
	f.calls["contents"]++
	if len(repo.refs) == 0 {
		ghError(w, http.StatusNotFound, "This repository is empty.")
		return
	}
	ref := r.URL.Query().Get("ref")
	if ref == "" {
		ref = repo.defaultBranch
	}
	commit, ok := f.resolve(repo, ref)
	if !ok {
		ghError(w, http.StatusNotFound, "No commit found for the ref "+ref)
		return
	}
	// Walk down the path.
	sha, dir := f.objects[commit].tree, true
	var entry gitEntry
	for _, seg := range strings.Split(strings.Trim(p, "/"), "/") {
		if !dir {
			ghError(w, http.StatusNotFound, "Not Found")
			return
		}
		i := slices.IndexFunc(f.objects[sha].entries, func(e gitEntry) bool { return e.name == seg })
		if i < 0 {
			ghError(w, http.StatusNotFound, "Not Found")
			return
		}
		entry = f.objects[sha].entries[i]
		sha, dir = entry.sha, entry.typ == "tree"
	}
	self := func(e gitEntry, full string) map[string]any {
		typ := map[string]string{"blob": "file", "tree": "dir", "commit": "submodule"}[e.typ]
		if e.mode == "120000" {
			typ = "symlink"
		}
		return map[string]any{
			"type": typ, "name": e.name, "path": full, "sha": e.sha, "size": e.size,
			"url":          f.baseURL() + "/repos/" + name + "/contents/" + full + "?ref=" + ref,
			"git_url":      f.baseURL() + "/repos/" + name + "/git/blobs/" + e.sha,
			"html_url":     "https://github.example.com/" + name + "/blob/" + ref + "/" + full,
			"download_url": "https://raw.github.example.com/" + name + "/" + ref + "/" + full,
		}
	}
	if dir {
		var list []map[string]any
		for _, e := range f.objects[sha].entries {
			list = append(list, self(e, path.Join(p, e.name)))
		}
		writeJSON(w, list)
		return
	}
	j := self(entry, p)
	if data := f.objects[entry.sha].data; len(data) <= 1<<20 {
		j["content"], j["encoding"] = wrap60(base64.StdEncoding.EncodeToString(data)), "base64"
	} else {
		j["content"], j["encoding"] = "", "none"
	}
	writeJSON(w, j)
}

// wrap60 breaks base64 into lines of 60, as GitHub's contents answers do.
func wrap60(s string) string {
	var b strings.Builder
	for len(s) > 60 {
		b.WriteString(s[:60] + "\n")
		s = s[60:]
	}
	b.WriteString(s + "\n")
	return b.String()
}

// harness is connectortest's harness over the fake: repository
// "octo/docs" with a README, a symbolic link and a submodule; Put commits a
// file under docs/<first letter>/ on the default branch.
type harness struct {
	f    *fakeGitHub
	conn *github.Connector

	mu      sync.Mutex
	shas    map[string][]string // the blob shas each id had
	limited int
}

const (
	testRepo     = "octo/docs"
	testPageSize = 4
	testMaxBytes = 64 << 10
)

func newHarness(t *testing.T, truncate bool) *harness {
	f := newFake(t)
	f.addRepo(testRepo, "main", true)
	f.mu.Lock()
	f.truncate = truncate
	f.change(testRepo, "main", func(files map[string]fileEntry) {
		files["README.md"] = fileEntry{mode: "100644", sha: f.blob([]byte("# Docs\n"))}
		files["docs/link.md"] = fileEntry{mode: "120000", sha: f.blob([]byte("../README.md"))}
		files["vendor/lib"] = fileEntry{mode: "160000", sha: gitHash("commit", []byte("elsewhere"))}
	})
	f.mu.Unlock()
	return &harness{f: f, conn: f.connector(t, testPageSize, testMaxBytes), shas: map[string][]string{}}
}

func itemPath(name string) string { return "docs/" + name[:1] + "/" + name + ".txt" }

func (h *harness) Connector() connectors.Connector { return h.conn }
func (h *harness) Source() connectors.Source       { return connectors.Source{Location: testRepo} }
func (h *harness) PageSize() int                   { return testPageSize }
func (h *harness) MaxBytes() int64                 { return testMaxBytes }

func (h *harness) Put(t *testing.T, name string, content []byte) string {
	p := itemPath(name)
	h.f.put(testRepo, p, content)
	id := github.ItemID(testRepo, "", p)
	h.mu.Lock()
	h.shas[id] = append(h.shas[id], gitHash("blob", content))
	h.mu.Unlock()
	return id
}

func (h *harness) Delete(t *testing.T, id string) {
	_, p, ok := strings.Cut(id, ":")
	require.True(t, ok)
	h.f.remove(testRepo, p)
}

func (h *harness) ExpireCredential(t *testing.T) bool {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	h.f.token = "ghs_anotherone"
	return true
}

// RateLimit alternates GitHub's primary rate limit (403, reset) and its
// secondary one (429, Retry-After).
func (h *harness) RateLimit(t *testing.T, d time.Duration) {
	h.mu.Lock()
	h.limited++
	primary := h.limited%2 == 1
	h.mu.Unlock()
	h.f.rateLimit(d, primary)
}

func (h *harness) Served(id string) int64 {
	h.mu.Lock()
	shas := h.shas[id]
	h.mu.Unlock()
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	var n int64
	for _, sha := range shas {
		n += h.f.served[sha]
	}
	return n
}

func TestConformance(t *testing.T) {
	connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newHarness(t, false) })
}

func TestConformanceTruncatedTrees(t *testing.T) {
	connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newHarness(t, true) })
}
