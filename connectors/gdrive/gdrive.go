// Package gdrive is the Google Drive connector: a thin client of Drive API
// v3's REST interface (files.list, files.get, files.export, changes) over
// connectors/rest, with no Google SDK.
//
// What it promises:
//   - A source (Source.Location) is one of:
//     "" or "all": every file the grant reaches (files.list with
//     corpora=allDrives: My Drive, files shared with the user and the
//     shared drives the user belongs to);
//     "folder:<id>": the files of that folder and of its subfolders, walked
//     breadth first, the walk (the folders still to list, at most
//     MaxPendingFolders at a time) kept in the cursor;
//     "drive:<id>": the files of that shared drive (corpora=drive).
//     With corpora=allDrives Drive may answer part of the files only
//     (incompleteSearch) when the user belongs to many shared drives: list
//     each drive as a source of its own then.
//     Source.Items, when set, lists those file ids only (files.get each, in
//     order, Config.PageSize a page); the location is then not listed.
//   - Scopes (Config.Scope, the operator's choice matching the OAuth
//     client's consent screen): ScopeReadonly ("drive.readonly", the
//     default) reads everything the user can; it is a restricted scope, so
//     an app using it in production needs Google's verification with a
//     security assessment. ScopeFile ("drive.file") reaches only the files
//     the user picked for the app (Google Picker) or the app created: with
//     it, only Source.Items is listed, and a listing of a location ("",
//     "all", a folder or a drive) is refused with KindInvalid.
//   - Listed: files that are neither trashed, folders, nor shortcuts
//     (application/vnd.google-apps.shortcut: skipped, not followed, so a
//     file is never listed twice through one), and of the Google Workspace
//     types only Docs, Sheets and Slides; Drawings, Forms, Sites, Maps,
//     Apps Script and the other native types are skipped. A file of the
//     legacy kind with two parents inside one walked folder tree is listed
//     once per parent.
//   - Content: a stored (binary) file is downloaded as is (alt=media) and
//     its Item.Version is its md5Checksum. A Google Doc is exported as
//     Markdown (text/markdown, which Drive offers since 2024; Item.Name gets
//     ".md" unless it ends so already), a Sheet as CSV of its
//     first sheet only (text/csv, ".csv"), Slides as plain text
//     (text/plain, ".txt"); their Item.Version is Drive's file version
//     (it grows with every change), their Item.Size -1 (Drive's size is
//     not the export's). Drive exports at most 10 MB: a larger export is
//     KindTooLarge (exportSizeLimitExceeded). Open checks a listed size
//     against Config.MaxBytes before reading and bounds the body by it.
//     Drive v3 offers no conditional download: Item.Seen is not used; a
//     sync diffs the listed versions. Open of an item without a
//     ContentType asks files.get first (a trashed file is then gone).
//   - Bounds: a listing yields at most Source.MaxItems items (default
//     connectors.DefaultMaxItems, at most connectors.HardMaxItems); a List
//     call sends at most maxRequestsPerPage files.list requests (a page
//     may be empty, its cursor moved on, when a folder walk meets only
//     empty folders).
//   - The cursor is base64 of a small JSON state: Drive's page token, the
//     folder walk, the count listed and a hash of the source (a cursor of
//     another source is invalid). It holds no credential.
//   - Change feed (connectors.ChangeFeed): StartToken is
//     changes.getStartPageToken (with driveId for a shared drive); Changes
//     lists changes.list pages. A change with removed=true or a trashed
//     file is in Changes.Removed. For a "drive:" source only that drive's
//     changes are asked; a file moved out of the drive is removed. For a "folder:" source a changed file is an item
//     when one of its parents leads up to the folder (each ancestor asked
//     once per Changes call, at most 32 levels up); a changed file
//     outside the folder is reported in Removed, since Drive does not say
//     where a file was before a move: a sync drops the document if it held
//     it (a file moved out) and ignores the id otherwise. A folder moved
//     into or out of the tree is a change to the folder only: the files it
//     carries are found (or dropped) by the next full listing. With Source.Items only the picked ids are
//     reported. Folders, shortcuts and skipped native types are never
//     items of the feed.
//   - Errors are read by Classify: 401 unauthenticated; 403 or 429 with
//     reason userRateLimitExceeded, rateLimitExceeded or
//     sharingRateLimitExceeded are rate limits (Drive's Retry-After when it
//     sends one, which it rarely does, else connectors.DefaultRetryAfter),
//     dailyLimitExceeded waits connectors.MaxRetryAfter; 403
//     exportSizeLimitExceeded is TooLarge; other 403s
//     (insufficientFilePermissions, domainPolicy, appNotAuthorizedToFile…)
//     forbidden; 404 gone; 400 invalid (a change token Drive no longer
//     honours among them); 5xx unavailable. Messages name the request and
//     Drive's reason code, never Drive's message text, a URL query or the
//     token.
package gdrive

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/rest"
)

// Defaults and limits.
const (
	// DefaultBaseURL is Drive API v3's root.
	DefaultBaseURL = "https://www.googleapis.com/drive/v3"
	// MaxPageSize is Drive's own cap on files.list's and changes.list's
	// pageSize.
	MaxPageSize = 1000
	// DefaultPageSize is Drive's default pageSize.
	DefaultPageSize = 100
	// DefaultMaxBytes caps one file's content.
	DefaultMaxBytes = 64 << 20
	// MaxPendingFolders bounds a folder walk's queue (and so its cursor):
	// a tree with more subfolders waiting to be listed at once is refused
	// as invalid; list its subfolders as sources of their own.
	MaxPendingFolders = 1000

	maxRequestsPerPage = 10 // files.list requests in one List call
	maxAncestry        = 32 // folder levels climbed to place a changed file
)

// Scopes the connector knows (Config.Scope), short for
// https://www.googleapis.com/auth/drive.readonly and …/drive.file.
const (
	ScopeReadonly = "drive.readonly"
	ScopeFile     = "drive.file"
)

// Drive's MIME types of its own.
const (
	mimeFolder   = "application/vnd.google-apps.folder"
	mimeShortcut = "application/vnd.google-apps.shortcut"
	mimeNative   = "application/vnd.google-apps."
)

// export is how a Google Workspace type is read: the export MIME type and
// the extension Item.Name gets.
type export struct{ mime, ext string }

var exports = map[string]export{
	"application/vnd.google-apps.document":     {"text/markdown", ".md"},
	"application/vnd.google-apps.spreadsheet":  {"text/csv", ".csv"}, // the first sheet only
	"application/vnd.google-apps.presentation": {"text/plain", ".txt"},
}

// fileFields are the file fields every request asks for.
const fileFields = "id,name,mimeType,md5Checksum,version,modifiedTime,size,trashed,parents,driveId"

// Config configures the Drive connector. Zero values take the defaults.
type Config struct {
	// BaseURL is Drive API v3's root. Default DefaultBaseURL.
	BaseURL string
	// AllowPrivate lets a BaseURL on a private or loopback host through
	// the SSRF guard (tests' fakes). Default false.
	AllowPrivate bool
	// PageSize is how many items a List page holds at most (and the
	// pageSize asked of Drive). Default DefaultPageSize, at most
	// MaxPageSize.
	PageSize int
	// MaxBytes caps one file's content. Default DefaultMaxBytes.
	MaxBytes int64
	// Scope is the OAuth scope the grant holds: ScopeReadonly (default) or
	// ScopeFile (the full URL forms are accepted too).
	Scope string
	// Now tells the time, for Retry-After dates. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	switch {
	case c.PageSize <= 0:
		c.PageSize = DefaultPageSize
	case c.PageSize > MaxPageSize:
		c.PageSize = MaxPageSize
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	c.Scope = scope(c.Scope)
	if c.Now == nil {
		c.Now = time.Now
	}
}

// scope is s in its short form, "" being ScopeReadonly.
func scope(s string) string {
	s = strings.TrimPrefix(s, "https://www.googleapis.com/auth/")
	if s == "" {
		return ScopeReadonly
	}
	return s
}

// Validate reports a configuration that cannot work: an unknown scope.
func (c Config) Validate() error {
	if s := scope(c.Scope); s != ScopeReadonly && s != ScopeFile {
		return apiary.E(apiary.KindInvalid, "gdrive: scope %q is not %q or %q", c.Scope, ScopeReadonly, ScopeFile)
	}
	return nil
}

// Connector lists and fetches Drive files with one grant. Safe for
// concurrent use.
type Connector struct {
	cfg    Config
	client *rest.Client
}

var (
	_ connectors.Connector  = (*Connector)(nil)
	_ connectors.ChangeFeed = (*Connector)(nil)
)

// New returns a Drive connector that asks tok for the access token of each
// request. A missing token source, an unknown scope or a base URL that is
// not an absolute http(s) URL is invalid.
func New(cfg Config, tok rest.TokenSource) (*Connector, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, apiary.E(apiary.KindInvalid, "gdrive: no token source")
	}
	c := &Connector{cfg: cfg}
	client, err := rest.New(rest.Config{
		Name:         "gdrive",
		BaseURL:      cfg.BaseURL,
		Token:        tok,
		Classify:     c.Classify,
		AllowPrivate: cfg.AllowPrivate,
	})
	if err != nil {
		return nil, err
	}
	c.client = client
	return c, nil
}

// source is a parsed Source.Location.
type source struct {
	kind string // "all", "folder", "drive"
	id   string // the folder's or the drive's
}

// fileID is the shape of Drive's file, folder and drive ids (and "root",
// My Drive's alias): ids go into paths and queries, so nothing else is let
// through.
var fileID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)

// parseSource reads src and checks it against the scope.
func (c *Connector) parseSource(src connectors.Source) (source, error) {
	var s source
	switch loc := strings.TrimSpace(src.Location); {
	case loc == "" || loc == "all":
		s.kind = "all"
	case strings.HasPrefix(loc, "folder:"):
		s.kind, s.id = "folder", strings.TrimPrefix(loc, "folder:")
	case strings.HasPrefix(loc, "drive:"):
		s.kind, s.id = "drive", strings.TrimPrefix(loc, "drive:")
	default:
		return s, apiary.E(apiary.KindInvalid, `gdrive: source %q is not "all", "folder:<id>" nor "drive:<id>"`, src.Location)
	}
	if s.kind != "all" && !fileID.MatchString(s.id) {
		return s, apiary.E(apiary.KindInvalid, "gdrive: source %q does not name a Drive id", src.Location)
	}
	for _, id := range src.Items {
		if !fileID.MatchString(id) {
			return s, apiary.E(apiary.KindInvalid, "gdrive: a picked item is not a Drive file id")
		}
	}
	if c.cfg.Scope == ScopeFile && len(src.Items) == 0 {
		return s, apiary.E(apiary.KindInvalid,
			"gdrive: with the drive.file scope Drive reaches only the files the user picked for the app: pass them as items rather than a location to list")
	}
	return s, nil
}

// cursor is a listing's (or a change feed's) state between calls.
type cursor struct {
	Source uint64   `json:"s"`           // hash of the source
	Feed   bool     `json:"c,omitempty"` // a change feed's token, not a listing's
	Token  string   `json:"t,omitempty"` // Drive's page token
	Folder string   `json:"f,omitempty"` // the folder being listed (a walk)
	Queue  []string `json:"q,omitempty"` // folders still to list (a walk)
	Index  int      `json:"i,omitempty"` // the next picked item
	Listed int      `json:"n,omitempty"` // items yielded so far
}

func (c cursor) encode() connectors.Cursor { return connectors.EncodeCursor(c) }

func decodeCursor(cur connectors.Cursor, src connectors.Source, feed bool) (cursor, error) {
	var st cursor
	decoded := connectors.DecodeCursor(cur, &st)
	ok := decoded && st.Source == src.Hash() && st.Feed == feed && st.Listed >= 0 &&
		st.Index >= 0 && st.Index <= len(src.Items) && len(st.Queue) <= MaxPendingFolders &&
		(st.Folder == "" || fileID.MatchString(st.Folder))
	for _, id := range st.Queue {
		ok = ok && fileID.MatchString(id)
	}
	if feed && st.Token == "" {
		ok = false
	}
	if !ok {
		return cursor{}, apiary.E(apiary.KindInvalid, "gdrive: the cursor is not one of this source's")
	}
	return st, nil
}

// file is Drive's file resource, the fields asked (fileFields).
type file struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	MimeType     string   `json:"mimeType"`
	MD5Checksum  string   `json:"md5Checksum"`
	Version      string   `json:"version"`
	ModifiedTime string   `json:"modifiedTime"`
	Size         string   `json:"size"` // int64 as a string, absent on native files
	Trashed      bool     `json:"trashed"`
	Parents      []string `json:"parents"`
	DriveID      string   `json:"driveId"`
}

// toItem is f as listed, false when f is not listed: a trashed file, or a
// native type with no text export (folders and shortcuts among them).
func toItem(f file) (connectors.Item, bool) {
	if f.ID == "" || f.Trashed {
		return connectors.Item{}, false
	}
	it := connectors.Item{ID: f.ID, Name: f.Name, ContentType: f.MimeType, Size: -1}
	it.Modified, _ = time.Parse(time.RFC3339Nano, f.ModifiedTime)
	if ex, ok := exports[f.MimeType]; ok {
		if !strings.HasSuffix(strings.ToLower(it.Name), ex.ext) {
			it.Name += ex.ext
		}
		it.Version = f.Version
		return it, true
	}
	if strings.HasPrefix(f.MimeType, mimeNative) {
		return connectors.Item{}, false
	}
	if n, err := strconv.ParseInt(f.Size, 10, 64); err == nil && n >= 0 {
		it.Size = n
	}
	it.Version = f.MD5Checksum
	if it.Version == "" {
		it.Version = f.Version
	}
	return it, true
}

func (c *Connector) limit(src connectors.Source) int {
	n := src.MaxItems
	if n <= 0 {
		n = connectors.DefaultMaxItems
	}
	return min(n, connectors.HardMaxItems)
}

// List returns the page of src's files that starts at cur.
func (c *Connector) List(ctx context.Context, src connectors.Source, cur connectors.Cursor) (connectors.Page, error) {
	s, err := c.parseSource(src)
	if err != nil {
		return connectors.Page{}, err
	}
	st := cursor{Source: src.Hash()}
	if s.kind == "folder" {
		st.Folder = s.id
	}
	if cur != "" {
		if st, err = decodeCursor(cur, src, false); err != nil {
			return connectors.Page{}, err
		}
		if s.kind == "folder" && st.Folder == "" && len(src.Items) == 0 {
			return connectors.Page{}, apiary.E(apiary.KindInvalid, "gdrive: the cursor is not one of this source's")
		}
	}
	limit := c.limit(src)
	if st.Listed >= limit {
		return connectors.Page{}, nil
	}
	if len(src.Items) > 0 {
		return c.listPicked(ctx, src.Items, st, limit)
	}
	return c.listFiles(ctx, s, st, limit)
}

// fileList is files.list's answer.
type fileList struct {
	NextPageToken string `json:"nextPageToken"`
	Files         []file `json:"files"`
}

// listQuery is the files.list query of s; a folder walk lists folder.
func listQuery(s source, folder string) url.Values {
	q := url.Values{
		"supportsAllDrives":         {"true"},
		"includeItemsFromAllDrives": {"true"},
		"fields":                    {"nextPageToken,files(" + fileFields + ")"},
	}
	skip := "trashed = false and mimeType != '" + mimeShortcut + "'"
	switch s.kind {
	case "folder":
		// Subfolders are listed too: the walk queues them.
		q.Set("q", "'"+folder+"' in parents and "+skip)
		q.Set("corpora", "allDrives")
	case "drive":
		q.Set("q", skip+" and mimeType != '"+mimeFolder+"'")
		q.Set("corpora", "drive")
		q.Set("driveId", s.id)
	default:
		q.Set("q", skip+" and mimeType != '"+mimeFolder+"'")
		q.Set("corpora", "allDrives")
	}
	return q
}

func (c *Connector) listFiles(ctx context.Context, s source, st cursor, limit int) (connectors.Page, error) {
	var page connectors.Page
	for range maxRequestsPerPage {
		q := listQuery(s, st.Folder)
		q.Set("pageSize", strconv.Itoa(min(c.cfg.PageSize, limit-st.Listed)))
		if st.Token != "" {
			q.Set("pageToken", st.Token)
		}
		var out fileList
		if err := c.client.JSON(ctx, rest.Request{Path: "files", Query: q, What: "list files"}, &out); err != nil {
			return connectors.Page{}, err
		}
		for _, f := range out.Files {
			if s.kind == "folder" && f.MimeType == mimeFolder && !f.Trashed && fileID.MatchString(f.ID) {
				if len(st.Queue) >= MaxPendingFolders {
					return connectors.Page{}, apiary.E(apiary.KindInvalid,
						"gdrive: list files: the folder tree has more than %d folders waiting to be listed: list its subfolders as sources of their own", MaxPendingFolders)
				}
				st.Queue = append(st.Queue, f.ID)
				continue
			}
			it, ok := toItem(f)
			if !ok {
				continue
			}
			if st.Listed >= limit {
				break
			}
			st.Listed++
			page.Items = append(page.Items, it)
		}
		switch {
		case st.Listed >= limit:
			return page, nil
		case out.NextPageToken != "":
			st.Token = out.NextPageToken
		case len(st.Queue) > 0:
			st.Folder, st.Queue, st.Token = st.Queue[0], st.Queue[1:], ""
		default:
			return page, nil // the end
		}
		if len(page.Items) > 0 {
			break
		}
	}
	page.Next = st.encode()
	return page, nil
}

func (c *Connector) listPicked(ctx context.Context, ids []string, st cursor, limit int) (connectors.Page, error) {
	var page connectors.Page
	end := min(len(ids), st.Index+c.cfg.PageSize, st.Index+limit-st.Listed)
	for _, id := range ids[st.Index:end] {
		f, err := c.getFile(ctx, id, fileFields, "get a picked file")
		if err != nil {
			return connectors.Page{}, err
		}
		if f.Trashed {
			return connectors.Page{}, connectors.Gone("gdrive: get a picked file: the file is in the trash")
		}
		st.Index++
		if it, ok := toItem(f); ok {
			st.Listed++
			page.Items = append(page.Items, it)
		}
	}
	if st.Index < len(ids) && st.Listed < limit {
		page.Next = st.encode()
	}
	return page, nil
}

// getFile is files.get of id's metadata (fields).
func (c *Connector) getFile(ctx context.Context, id, fields, what string) (file, error) {
	var f file
	err := c.client.JSON(ctx, rest.Request{
		Path:  "files/" + id,
		Query: url.Values{"fields": {fields}, "supportsAllDrives": {"true"}},
		What:  what,
	}, &f)
	return f, err
}

// Open streams item's content: a stored file as is, a Doc, Sheet or
// Slides exported as text. An item without a ContentType is looked up
// first.
func (c *Connector) Open(ctx context.Context, item connectors.Item) (*connectors.Content, error) {
	if !fileID.MatchString(item.ID) {
		return nil, apiary.E(apiary.KindInvalid, "gdrive: item id is not a Drive file id")
	}
	what := "file " + item.ID
	mime, version, size := item.ContentType, item.Version, item.Size
	if mime == "" {
		f, err := c.getFile(ctx, item.ID, fileFields, "get "+what)
		if err != nil {
			return nil, err
		}
		if f.Trashed {
			return nil, connectors.Gone("gdrive: get %s: the file is in the trash", what)
		}
		listed, ok := toItem(f)
		if !ok {
			return nil, apiary.E(apiary.KindInvalid, "gdrive: get %s: a %s is not read as a document", what, f.MimeType)
		}
		mime, version, size = f.MimeType, listed.Version, listed.Size
	}
	if ex, ok := exports[mime]; ok {
		return c.fetch(ctx, rest.Request{
			Path:  "files/" + item.ID + "/export",
			Query: url.Values{"mimeType": {ex.mime}},
			What:  "export " + what,
		}, what, version, ex.mime)
	}
	if strings.HasPrefix(mime, mimeNative) {
		return nil, apiary.E(apiary.KindInvalid, "gdrive: open %s: a %s has no text export", what, mime)
	}
	if size > c.cfg.MaxBytes {
		return nil, connectors.TooLarge("gdrive: "+what, c.cfg.MaxBytes)
	}
	return c.fetch(ctx, rest.Request{
		Path:  "files/" + item.ID,
		Query: url.Values{"alt": {"media"}, "supportsAllDrives": {"true"}},
		What:  "download " + what,
	}, what, version, mime)
}

// fetch sends a download request and bounds its body.
func (c *Connector) fetch(ctx context.Context, r rest.Request, what, version, ctype string) (*connectors.Content, error) {
	resp, err := c.client.Do(ctx, r)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		rest.Drain(resp)
		return nil, apiary.E(apiary.KindUnavailable, "gdrive: %s: unexpected status %d", r.What, resp.StatusCode)
	}
	content, err := rest.Content(resp, c.cfg.MaxBytes, "gdrive: "+what, version)
	if err != nil {
		return nil, err
	}
	if content.ContentType == "" {
		content.ContentType = ctype
	}
	return content, nil
}

// StartToken returns the change token of now for src
// (changes.getStartPageToken).
func (c *Connector) StartToken(ctx context.Context, src connectors.Source) (connectors.Cursor, error) {
	s, err := c.parseSource(src)
	if err != nil {
		return "", err
	}
	q := url.Values{"supportsAllDrives": {"true"}}
	if s.kind == "drive" {
		q.Set("driveId", s.id)
	}
	var out struct {
		StartPageToken string `json:"startPageToken"`
	}
	if err := c.client.JSON(ctx, rest.Request{Path: "changes/startPageToken", Query: q, What: "get the start page token"}, &out); err != nil {
		return "", err
	}
	if out.StartPageToken == "" {
		return "", apiary.E(apiary.KindUnavailable, "gdrive: get the start page token: Drive answered none")
	}
	return cursor{Source: src.Hash(), Feed: true, Token: out.StartPageToken}.encode(), nil
}

// changeList is changes.list's answer.
type changeList struct {
	NextPageToken     string `json:"nextPageToken"`
	NewStartPageToken string `json:"newStartPageToken"`
	Changes           []struct {
		Removed bool   `json:"removed"`
		FileID  string `json:"fileId"`
		File    *file  `json:"file"`
	} `json:"changes"`
}

// Changes returns one page of src's changes after token (changes.list).
func (c *Connector) Changes(ctx context.Context, src connectors.Source, token connectors.Cursor) (connectors.Changes, error) {
	s, err := c.parseSource(src)
	if err != nil {
		return connectors.Changes{}, err
	}
	st, err := decodeCursor(token, src, true)
	if err != nil {
		return connectors.Changes{}, err
	}
	q := url.Values{
		"pageToken":                 {st.Token},
		"pageSize":                  {strconv.Itoa(c.cfg.PageSize)},
		"supportsAllDrives":         {"true"},
		"includeItemsFromAllDrives": {"true"},
		"includeRemoved":            {"true"},
		"fields":                    {"nextPageToken,newStartPageToken,changes(removed,fileId,file(" + fileFields + "))"},
	}
	if s.kind == "drive" {
		q.Set("driveId", s.id)
	}
	var out changeList
	if err := c.client.JSON(ctx, rest.Request{Path: "changes", Query: q, What: "list changes"}, &out); err != nil {
		return connectors.Changes{}, err
	}
	var picked map[string]bool
	if len(src.Items) > 0 {
		picked = make(map[string]bool, len(src.Items))
		for _, id := range src.Items {
			picked[id] = true
		}
	}
	var ch connectors.Changes
	under := map[string]bool{} // folders known to be in (or out of) the source's folder
	for _, x := range out.Changes {
		if x.FileID == "" || (picked != nil && !picked[x.FileID]) {
			continue // a shared drive's own change, or not a picked file
		}
		if x.Removed || x.File == nil || x.File.Trashed {
			ch.Removed = append(ch.Removed, x.FileID)
			continue
		}
		f := *x.File
		f.ID = x.FileID
		if s.kind == "drive" && f.DriveID != s.id {
			ch.Removed = append(ch.Removed, f.ID) // moved out of the drive
			continue
		}
		if s.kind == "folder" && picked == nil {
			in, err := c.inFolder(ctx, f.Parents, s.id, under, 0)
			if err != nil {
				return connectors.Changes{}, err
			}
			if !in {
				ch.Removed = append(ch.Removed, f.ID) // moved out, or never in
				continue
			}
		}
		if it, ok := toItem(f); ok {
			ch.Items = append(ch.Items, it)
		}
	}
	switch {
	case out.NextPageToken != "":
		ch.Next = cursor{Source: st.Source, Feed: true, Token: out.NextPageToken}.encode()
	case out.NewStartPageToken != "":
		ch.Token = cursor{Source: st.Source, Feed: true, Token: out.NewStartPageToken}.encode()
	default:
		return connectors.Changes{}, apiary.E(apiary.KindUnavailable, "gdrive: list changes: Drive named neither a next page nor a new start token")
	}
	return ch, nil
}

// inFolder reports whether one of parents is root or lies under it,
// climbing at most maxAncestry levels; under remembers the folders placed.
// A parent the grant cannot see is outside.
func (c *Connector) inFolder(ctx context.Context, parents []string, root string, under map[string]bool, depth int) (bool, error) {
	for _, p := range parents {
		if p == root {
			return true, nil
		}
		in, known := under[p]
		if !known && depth < maxAncestry && fileID.MatchString(p) {
			under[p] = false // a cycle climbs no further
			f, err := c.getFile(ctx, p, "id,parents", "get a parent folder")
			switch {
			case err == nil:
				if in, err = c.inFolder(ctx, f.Parents, root, under, depth+1); err != nil {
					return false, err
				}
			case errors.Is(err, connectors.ErrGone) || apiary.KindOf(err) == apiary.KindForbidden:
			default:
				return false, err
			}
			under[p] = in
		}
		if in {
			return true, nil
		}
	}
	return false, nil
}

// googleError is the error body of Google's APIs.
type googleError struct {
	Error struct {
		Code   int `json:"code"`
		Errors []struct {
			Domain string `json:"domain"`
			Reason string `json:"reason"`
		} `json:"errors"`
		Status string `json:"status"`
	} `json:"error"`
}

// reasonCode is the shape of Google's reason codes: only such a code is
// quoted in an error, never anything else of the body.
var reasonCode = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

// Classify reads Drive's non-2xx answer resp, its body read into body, to
// the request what ("gdrive: list files"): see the package doc.
func (c *Connector) Classify(resp *http.Response, body []byte, what string) error {
	var ge googleError
	rest.ErrorBody(body, &ge)
	reason := ""
	for _, e := range ge.Error.Errors {
		if reasonCode.MatchString(e.Reason) {
			reason = e.Reason
			break
		}
	}
	wait := connectors.ParseRetryAfter(resp.Header, c.cfg.Now())
	switch reason {
	case "userRateLimitExceeded", "rateLimitExceeded", "sharingRateLimitExceeded":
		return connectors.RetryAfter(wait, "%s: Drive asks to slow down (%s)", what, reason)
	case "dailyLimitExceeded":
		return connectors.RetryAfter(max(wait, connectors.MaxRetryAfter), "%s: the app's daily Drive quota is spent (%s)", what, reason)
	case "exportSizeLimitExceeded":
		return apiary.E(apiary.KindTooLarge, "%s: Drive exports at most 10 MB of a Google Workspace file (%s)", what, reason)
	}
	why := reason
	if why == "" {
		why = strconv.Itoa(resp.StatusCode)
	}
	switch s := resp.StatusCode; {
	case s == http.StatusUnauthorized:
		return apiary.E(apiary.KindUnauthenticated, "%s: Google refused the access token: it may have expired or been revoked (%s)", what, why)
	case s == http.StatusForbidden:
		return apiary.E(apiary.KindForbidden, "%s: the grant may not read this (%s)", what, why)
	case s == http.StatusNotFound:
		return connectors.Gone("%s: Drive has no such file, or the grant cannot see it (%s)", what, why)
	case s == http.StatusTooManyRequests:
		return connectors.RetryAfter(wait, "%s: Drive asks to slow down (%s)", what, why)
	case s == http.StatusBadRequest:
		return apiary.E(apiary.KindInvalid, "%s: Drive refused the request or its page token (%s)", what, why)
	}
	return connectors.ClassifyStatus(resp, what)
}
