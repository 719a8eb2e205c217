// Package graph is the SharePoint and OneDrive connector: a thin client of
// Microsoft Graph v1.0's drive API (https://graph.microsoft.com/v1.0)
// through connectors/rest, with no vendor SDK.
//
// What it promises:
//   - A source location names one drive:
//     "" or "me" is the signed-in user's OneDrive (/me/drive);
//     "drive:<drive-id>" is any drive the grant reaches (/drives/{id});
//     "site:<site-id>" is a SharePoint site's default document library
//     (/sites/{id}/drive). A folder inside a drive is not a source form:
//     OneDrive for Business and SharePoint answer delta on a drive's root
//     only. The drive of "me" and "site:" is resolved once per listing
//     (GET /me/drive, /sites/{id}/drive) and kept in the cursor.
//   - An item's ID is "<drive-id>/<item-id>" (Graph's ids hold no "/"), so
//     that Open needs nothing but the ID. Source.Items takes picked ids in
//     that form, or a bare item id, looked up in the source's drive; the
//     listing names each by its full ID, in order, fetched with
//     GET /drives/{d}/items/{id} a page (Config.PageSize) at a time. A
//     picked folder or OneNote notebook is skipped; a picked id gone at the
//     source fails the listing with connectors.ErrGone.
//   - A full listing walks the drive's delta (GET /drives/{d}/root/delta,
//     $top = Config.PageSize, pages linked by @odata.nextLink): only items
//     with a file facet are documents; folders, the root, OneNote notebooks
//     (the package facet) and entries with the deleted facet are skipped.
//     The cursor holds the nextLink (checked to be of the API's own origin
//     and base path before it is followed with the token), how many of
//     that page's documents were already yielded (a vendor page larger
//     than PageSize is split) and a hash of the location and picks (another
//     source's cursor is invalid). A listing yields at most
//     Source.MaxItems (default connectors.DefaultMaxItems, at most
//     connectors.HardMaxItems).
//   - Versions: the item's cTag (the content tag, which changes with the
//     content only); where Graph omits it (OneDrive for Business leaves it
//     out of delta answers) the eTag, which also changes with metadata
//     (a rename re-ingests, a content change is never missed).
//   - Change feed (connectors.ChangeFeed): StartToken asks delta with
//     token=latest and keeps its @odata.deltaLink; Changes follows it and
//     the nextLinks after it: files are changed items, entries with the
//     deleted facet are removed ids (Graph does not say whether a deleted
//     entry was a file: every deleted id but a folder's is named), and the
//     last page's deltaLink is the next token. A token Graph no longer
//     honours answers 410 Gone with resyncRequired (or its inner codes
//     resyncChangesApplyDifferences, resyncChangesUploadDifferences): that
//     is KindInvalid, and the caller lists the source in full again (the
//     Location of a fresh enumeration Graph sends with it is not followed).
//     With Source.Items set, the feed names only the picked items; a
//     token is the drive's, whatever the picks.
//   - Open: GET /drives/{d}/items/{id}/content answers 302 with a
//     pre-authenticated URL in Location. Exactly one redirect is followed,
//     WITHOUT the Authorization header, and only to a host of
//     Config.DownloadHosts over https (http only when the API base itself is
//     http: a test fake); a redirect elsewhere or a second redirect is
//     KindInvalid, its error naming no URL. With Item.Seen, the request asks
//     If-None-Match: an unchanged item (304) is connectors.ErrNotModified.
//     An item listed over Config.MaxBytes fails before any request; the body
//     is capped by rest.Content.
//   - Errors are read by Classify from Graph's error body
//     {"error":{"code":...,"innerError":{...}}}, whose message is never
//     quoted. Graph's throttling (429, or 503 with Retry-After) is
//     KindRateLimited with its delay.
package graph

import (
	"context"
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
	DefaultBaseURL  = "https://graph.microsoft.com/v1.0"
	DefaultPageSize = 200
	MaxPageSize     = 999
	DefaultMaxBytes = 64 << 20
)

// DefaultDownloadHosts are the hosts Graph's download redirects point to:
// SharePoint and OneDrive for Business (*.sharepoint.com), OneDrive
// personal (*.1drv.com, which covers *.files.1drv.com, and
// my.microsoftpersonalcontent.com), and Microsoft's service CDN (*.svc.ms).
// National clouds (sharepoint.us, sharepoint.cn…) are added through
// Config.DownloadHosts.
var DefaultDownloadHosts = []string{
	"*.sharepoint.com",
	"*.1drv.com",
	"*.svc.ms",
	"*.microsoftpersonalcontent.com",
}

// Config configures the Graph connector. Zero values take the defaults.
type Config struct {
	// BaseURL is Graph's API root. Default DefaultBaseURL; a national
	// cloud's (https://graph.microsoft.us/v1.0) or a test fake's.
	BaseURL string
	// AllowPrivate lets the API and download hosts be private or loopback
	// addresses (tests). Default false.
	AllowPrivate bool
	// PageSize is how many items a List page holds at most ($top of the
	// delta request). Default DefaultPageSize, at most MaxPageSize.
	PageSize int
	// MaxBytes caps one item's content. Default 64 MiB.
	MaxBytes int64
	// DownloadHosts are the hosts a download redirect may point to: a name
	// matches itself ("host" or "host:port"), "*.example.com" matches every
	// name under example.com. Default DefaultDownloadHosts.
	DownloadHosts []string
	// HTTP makes the requests. Default: rest's client through the SSRF
	// guard, following no redirect. One given here must follow none.
	HTTP *http.Client
}

func (c *Config) setDefaults() {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.PageSize <= 0 {
		c.PageSize = DefaultPageSize
	}
	c.PageSize = min(c.PageSize, MaxPageSize)
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if len(c.DownloadHosts) == 0 {
		c.DownloadHosts = DefaultDownloadHosts
	}
}

// Connector lists and fetches a drive's files with one token source. Safe
// for concurrent use.
type Connector struct {
	cfg    Config
	client *rest.Client
	base   *url.URL
}

var (
	_ connectors.Connector  = (*Connector)(nil)
	_ connectors.ChangeFeed = (*Connector)(nil)
)

// New returns a Graph connector asking tok for the bearer token of each
// request. A base URL that is not an absolute http(s) URL, or a download
// host pattern that is empty or malformed, is invalid.
func New(cfg Config, tok rest.TokenSource) (*Connector, error) {
	cfg.setDefaults()
	for _, h := range cfg.DownloadHosts {
		name := strings.TrimPrefix(h, "*.")
		if name == "" || strings.ContainsAny(name, "/*?#@ ") {
			return nil, apiary.E(apiary.KindInvalid, "graph: download host %q is not a host name or *.domain", h)
		}
	}
	client, err := rest.New(rest.Config{
		Name:         "graph",
		BaseURL:      cfg.BaseURL,
		Token:        tok,
		Header:       http.Header{"Accept": {"application/json"}},
		Classify:     Classify,
		HTTP:         cfg.HTTP,
		AllowPrivate: cfg.AllowPrivate,
	})
	if err != nil {
		return nil, err
	}
	base, _ := url.Parse(strings.TrimSuffix(cfg.BaseURL, "/"))
	return &Connector{cfg: cfg, client: client, base: base}, nil
}

// source is a parsed location.
type source struct {
	drive string // the drive's id, when the location names it
	path  string // the drive's path: /me/drive, /drives/{id}, /sites/{id}/drive
}

// graphID is what Graph's drive, site and item ids are made of: letters,
// digits and -_!.,{} (site ids are "host,guid,guid").
var graphID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9!._,{}-]{0,511}$`)

func parseSource(loc string) (source, error) {
	kind, id, _ := strings.Cut(loc, ":")
	switch {
	case loc == "" || loc == "me":
		return source{path: "/me/drive"}, nil
	case kind == "drive" && graphID.MatchString(id):
		return source{drive: id, path: "/drives/" + id}, nil
	case kind == "site" && graphID.MatchString(id):
		return source{path: "/sites/" + id + "/drive"}, nil
	}
	return source{}, apiary.E(apiary.KindInvalid,
		`graph: source %q is not "me", "drive:<drive-id>" or "site:<site-id>"`, loc)
}

// ItemID is the ID of item in drive: "<drive-id>/<item-id>".
func ItemID(drive, item string) string { return drive + "/" + item }

func parseItemID(id string) (drive, item string, err error) {
	drive, item, ok := strings.Cut(id, "/")
	if !ok || !graphID.MatchString(drive) || !graphID.MatchString(item) {
		return "", "", apiary.E(apiary.KindInvalid, "graph: item id is not <drive-id>/<item-id>")
	}
	return drive, item, nil
}

// driveItem is the part of Graph's driveItem the connector reads.
type driveItem struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	ETag     string    `json:"eTag"`
	CTag     string    `json:"cTag"`
	Modified time.Time `json:"lastModifiedDateTime"`
	File     *struct {
		MimeType string `json:"mimeType"`
	} `json:"file"`
	Folder  *struct{} `json:"folder"`
	Package *struct{} `json:"package"`
	Deleted *struct{} `json:"deleted"`
	Parent  struct {
		DriveID string `json:"driveId"`
	} `json:"parentReference"`
}

// selectFields is the $select of every item request.
const selectFields = "id,name,size,eTag,cTag,lastModifiedDateTime,file,folder,package,deleted,parentReference"

// document reports whether it is a file (not a folder, notebook or
// tombstone).
func (it *driveItem) document() bool {
	return it.File != nil && it.Folder == nil && it.Package == nil && it.Deleted == nil
}

func (it *driveItem) item(drive string) connectors.Item {
	if it.Parent.DriveID != "" {
		drive = it.Parent.DriveID
	}
	version := it.CTag
	if version == "" {
		version = it.ETag
	}
	return connectors.Item{
		ID:          ItemID(drive, it.ID),
		Name:        it.Name,
		ContentType: it.File.MimeType,
		Size:        it.Size,
		Version:     version,
		Modified:    it.Modified,
	}
}

// deltaPage is one answer of delta.
type deltaPage struct {
	Value     []driveItem `json:"value"`
	NextLink  string      `json:"@odata.nextLink"`
	DeltaLink string      `json:"@odata.deltaLink"`
}

// cursor is the state of a listing or change feed between calls.
type cursor struct {
	Source uint64 `json:"s"`           // sourceHash of the source
	Drive  string `json:"d"`           // the drive's id
	Link   string `json:"l,omitempty"` // the nextLink or deltaLink to follow
	Skip   int    `json:"k,omitempty"` // documents of Link's page already yielded
	Listed int    `json:"n,omitempty"` // documents yielded so far; picks: ids done
}

func (c cursor) encode() connectors.Cursor { return connectors.EncodeCursor(c) }

// decodeCursor reads cur of src; a link must be Graph's own (the origin and
// base path of the API), since it is followed with the token.
func (c *Connector) decodeCursor(cur connectors.Cursor, src connectors.Source, needLink bool) (cursor, error) {
	var st cursor
	decoded := connectors.DecodeCursor(cur, &st)
	ok := decoded && st.Source == src.Hash() && st.Skip >= 0 && st.Listed >= 0 &&
		(st.Drive == "" || graphID.MatchString(st.Drive)) && (!needLink || c.ownLink(st.Link))
	if !ok {
		return cursor{}, apiary.E(apiary.KindInvalid, "graph: the cursor is not one of this source's")
	}
	return st, nil
}

// ownLink reports whether link is an API URL of the configured origin and
// base path.
func (c *Connector) ownLink(link string) bool {
	if link == "" || !c.client.SameOrigin(link) {
		return false
	}
	u, err := url.Parse(link)
	return err == nil && strings.HasPrefix(u.Path, strings.TrimSuffix(c.base.Path, "/")+"/")
}

// linkTo checks a link Graph answered, to be followed with the token.
func (c *Connector) linkTo(link, what string) error {
	if !c.ownLink(link) {
		return apiary.E(apiary.KindInvalid, "graph: %s: Graph linked to another origin", what)
	}
	return nil
}

func limitOf(src connectors.Source) int {
	n := src.MaxItems
	if n <= 0 {
		n = connectors.DefaultMaxItems
	}
	return min(n, connectors.HardMaxItems)
}

// List returns the page of src's documents that starts at cur.
func (c *Connector) List(ctx context.Context, src connectors.Source, cur connectors.Cursor) (connectors.Page, error) {
	s, err := parseSource(src.Location)
	if err != nil {
		return connectors.Page{}, err
	}
	if len(src.Items) > 0 {
		return c.listPicked(ctx, src, s, cur)
	}
	limit := limitOf(src)
	var st cursor
	if cur == "" {
		if st, err = c.start(ctx, src, s, nil); err != nil {
			return connectors.Page{}, err
		}
	} else if st, err = c.decodeCursor(cur, src, true); err != nil {
		return connectors.Page{}, err
	}
	if st.Listed >= limit {
		return connectors.Page{}, nil
	}
	var dp deltaPage
	if err := c.client.JSON(ctx, rest.Request{Path: st.Link, What: "list the drive"}, &dp); err != nil {
		return connectors.Page{}, err
	}
	var page connectors.Page
	skipped := 0
	for i := range dp.Value {
		it := &dp.Value[i]
		if !it.document() {
			continue
		}
		if skipped < st.Skip {
			skipped++
			continue
		}
		if st.Listed >= limit {
			return page, nil
		}
		if len(page.Items) == c.cfg.PageSize { // a vendor page larger than ours
			st.Skip += len(page.Items)
			page.Next = st.encode()
			return page, nil
		}
		page.Items = append(page.Items, it.item(st.Drive))
		st.Listed++
	}
	if dp.NextLink != "" && st.Listed < limit {
		if err := c.linkTo(dp.NextLink, "list the drive"); err != nil {
			return connectors.Page{}, err
		}
		st.Link, st.Skip = dp.NextLink, 0
		page.Next = st.encode()
	}
	return page, nil
}

// start is the cursor of a first delta request of s (query: token=latest
// for a change feed's start), resolving the drive's id when the location
// does not name it.
func (c *Connector) start(ctx context.Context, src connectors.Source, s source, query url.Values) (cursor, error) {
	drive := s.drive
	if drive == "" {
		var d struct {
			ID string `json:"id"`
		}
		err := c.client.JSON(ctx, rest.Request{Path: s.path, Query: url.Values{"$select": {"id"}}, What: "get the drive"}, &d)
		if err != nil {
			return cursor{}, err
		}
		if !graphID.MatchString(d.ID) {
			return cursor{}, apiary.E(apiary.KindUnavailable, "graph: get the drive: Graph answered no drive id")
		}
		drive = d.ID
	}
	q := url.Values{"$top": {strconv.Itoa(c.cfg.PageSize)}, "$select": {selectFields}}
	for k, v := range query {
		q[k] = v
	}
	return cursor{Source: src.Hash(), Drive: drive, Link: c.client.URL("/drives/"+drive+"/root/delta", q)}, nil
}

// listPicked lists src.Items from the index the cursor holds.
func (c *Connector) listPicked(ctx context.Context, src connectors.Source, s source, cur connectors.Cursor) (connectors.Page, error) {
	st := cursor{Source: src.Hash()}
	if cur != "" {
		var err error
		if st, err = c.decodeCursor(cur, src, false); err != nil {
			return connectors.Page{}, err
		}
	}
	ids := src.Items[:min(len(src.Items), limitOf(src))]
	var page connectors.Page
	for st.Listed < len(ids) && len(page.Items) < c.cfg.PageSize {
		it, drive, err := c.getItem(ctx, s, ids[st.Listed])
		if err != nil {
			return connectors.Page{}, err
		}
		st.Listed++
		if it.document() {
			page.Items = append(page.Items, it.item(drive))
		}
	}
	if st.Listed < len(ids) {
		page.Next = st.encode()
	}
	return page, nil
}

// getItem fetches the metadata of a picked id: "<drive>/<item>", or an item
// id of s's drive.
func (c *Connector) getItem(ctx context.Context, s source, id string) (*driveItem, string, error) {
	path, drive := s.path+"/items/"+id, s.drive
	if strings.Contains(id, "/") {
		d, item, err := parseItemID(id)
		if err != nil {
			return nil, "", err
		}
		path, drive = "/drives/"+d+"/items/"+item, d
	} else if !graphID.MatchString(id) {
		return nil, "", apiary.E(apiary.KindInvalid, "graph: a picked id is not <drive-id>/<item-id> or an item id")
	}
	var it driveItem
	err := c.client.JSON(ctx, rest.Request{Path: path, Query: url.Values{"$select": {selectFields}}, What: "get a picked item"}, &it)
	if err != nil {
		return nil, "", err
	}
	if it.Parent.DriveID == "" && drive == "" {
		return nil, "", apiary.E(apiary.KindUnavailable, "graph: get a picked item: Graph named no drive")
	}
	return &it, drive, nil
}

// StartToken returns the deltaLink of now for src's drive.
func (c *Connector) StartToken(ctx context.Context, src connectors.Source) (connectors.Cursor, error) {
	s, err := parseSource(src.Location)
	if err != nil {
		return "", err
	}
	// A token is the drive's, whatever the picks.
	st, err := c.start(ctx, connectors.Source{Location: src.Location}, s, url.Values{"token": {"latest"}})
	if err != nil {
		return "", err
	}
	var dp deltaPage
	if err := c.client.JSON(ctx, rest.Request{Path: st.Link, What: "start the change feed"}, &dp); err != nil {
		return "", err
	}
	if dp.DeltaLink == "" {
		return "", apiary.E(apiary.KindUnavailable, "graph: start the change feed: Graph answered no delta link")
	}
	if err := c.linkTo(dp.DeltaLink, "start the change feed"); err != nil {
		return "", err
	}
	st.Link = dp.DeltaLink
	return st.encode(), nil
}

// Changes returns one page of what changed in src's drive after token.
func (c *Connector) Changes(ctx context.Context, src connectors.Source, token connectors.Cursor) (connectors.Changes, error) {
	if _, err := parseSource(src.Location); err != nil {
		return connectors.Changes{}, err
	}
	st, err := c.decodeCursor(token, connectors.Source{Location: src.Location}, true)
	if err != nil {
		return connectors.Changes{}, err
	}
	var picked map[string]bool
	if len(src.Items) > 0 {
		picked = map[string]bool{}
		for _, id := range src.Items {
			picked[id] = true
		}
	}
	want := func(drive, id string) bool {
		return picked == nil || picked[ItemID(drive, id)] || picked[id]
	}
	var dp deltaPage
	if err := c.client.JSON(ctx, rest.Request{Path: st.Link, What: "list changes"}, &dp); err != nil {
		return connectors.Changes{}, err
	}
	var ch connectors.Changes
	for i := range dp.Value {
		it := &dp.Value[i]
		drive := st.Drive
		if it.Parent.DriveID != "" {
			drive = it.Parent.DriveID
		}
		switch {
		case !want(drive, it.ID):
		case it.Deleted != nil && it.Folder == nil:
			ch.Removed = append(ch.Removed, ItemID(drive, it.ID))
		case it.document():
			ch.Items = append(ch.Items, it.item(drive))
		}
	}
	link := dp.NextLink
	if link == "" {
		link = dp.DeltaLink
	}
	if link == "" {
		return connectors.Changes{}, apiary.E(apiary.KindUnavailable, "graph: list changes: Graph answered neither a next nor a delta link")
	}
	if err := c.linkTo(link, "list changes"); err != nil {
		return connectors.Changes{}, err
	}
	st.Link = link
	if dp.NextLink != "" {
		ch.Next = st.encode()
	} else {
		ch.Token = st.encode()
	}
	return ch, nil
}

// Open streams item's content: the 302 of /content is followed once, to an
// allowed download host, without the token.
func (c *Connector) Open(ctx context.Context, item connectors.Item) (*connectors.Content, error) {
	drive, id, err := parseItemID(item.ID)
	if err != nil {
		return nil, err
	}
	what := "graph: fetch item " + id
	if item.Size > c.cfg.MaxBytes {
		return nil, connectors.TooLarge(what, c.cfg.MaxBytes)
	}
	req := rest.Request{Path: "/drives/" + drive + "/items/" + id + "/content", What: "fetch item " + id}
	if item.Seen != "" {
		req.Header = http.Header{"If-None-Match": {item.Seen}}
	}
	resp, err := c.client.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	switch s := resp.StatusCode; {
	case s == http.StatusNotModified:
		rest.Drain(resp)
		return nil, connectors.ErrNotModified
	case s >= 300 && s < 400:
		loc, refused := c.downloadURL(resp)
		rest.Drain(resp)
		if refused != "" {
			return nil, apiary.E(apiary.KindInvalid, "%s: Graph redirected %s: not followed", what, refused)
		}
		resp, err = c.client.Do(ctx, rest.Request{Path: loc, NoToken: true, What: "download item " + id})
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 200 || resp.StatusCode >= 300 {
			rest.Drain(resp)
			return nil, apiary.E(apiary.KindInvalid, "%s: the download host answered %d, not the content (a second redirect is not followed)", what, resp.StatusCode)
		}
	case s < 200 || s >= 300:
		rest.Drain(resp)
		return nil, apiary.E(apiary.KindUnavailable, "%s: unexpected status %d", what, s)
	}
	version := item.Version
	if version == "" {
		version = resp.Header.Get("ETag")
	}
	content, err := rest.Content(resp, c.cfg.MaxBytes, what, version)
	if err == nil && content.ContentType == "" {
		content.ContentType = item.ContentType
	}
	return content, err
}

// downloadURL is the Location of a download redirect when it is an allowed
// host's over https (or http when the API's base is http); else why it is
// refused, naming no URL (the URL is a bearer of its own).
func (c *Connector) downloadURL(resp *http.Response) (loc, refused string) {
	u, err := resp.Location()
	switch {
	case err != nil:
		return "", "without a usable Location"
	case u.Scheme != "https" && u.Scheme != c.base.Scheme:
		return "", "to a URL that is not https"
	case u.User != nil:
		return "", "to a URL holding user info"
	case !c.allowedHost(u):
		return "", "to a host that is not an allowed download host"
	}
	return u.String(), ""
}

// allowedHost reports whether u's host matches a download host pattern.
func (c *Connector) allowedHost(u *url.URL) bool {
	name := strings.ToLower(u.Hostname())
	host := strings.ToLower(u.Host)
	for _, p := range c.cfg.DownloadHosts {
		p = strings.ToLower(p)
		if suffix, ok := strings.CutPrefix(p, "*."); ok {
			if strings.HasSuffix(name, "."+suffix) {
				return true
			}
		} else if p == name || p == host {
			return true
		}
	}
	return false
}

// graphError is Graph's error body. Its message is never read: it may
// quote the request.
type graphError struct {
	Error struct {
		Code  string `json:"code"`
		Inner struct {
			Code string `json:"code"`
		} `json:"innerError"` // also "innererror": encoding/json matches names case-insensitively
	} `json:"error"`
}

// errorCode is a vendor code fit to name in an error: an identifier.
var errorCode = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.]{0,63}$`)

// Classify reads Graph's non-2xx answer to the request named what:
//   - 410 with resyncRequired, or an inner code resyncChanges…: invalid (the
//     delta token is no longer honoured: list the source in full again);
//   - 401 (InvalidAuthenticationToken, unauthenticated): unauthenticated;
//   - 403 (accessDenied): forbidden;
//   - 404 (itemNotFound), another 410: gone;
//   - 429, and 503 or 509 with Retry-After (Graph's and SharePoint's
//     throttling): rate limited with the delay (connectors.DefaultRetryAfter
//     when a 429 names none);
//   - other 5xx: unavailable; other 4xx: invalid.
//
// The error names Graph's code, never its message.
func Classify(resp *http.Response, body []byte, what string) error {
	var ge graphError
	rest.ErrorBody(body, &ge)
	code, inner := ge.Error.Code, ge.Error.Inner.Code
	named := ""
	if errorCode.MatchString(code) {
		named = " (" + code + ")"
	}
	now := time.Now()
	switch s := resp.StatusCode; {
	case s == http.StatusGone && (strings.EqualFold(code, "resyncRequired") || strings.HasPrefix(strings.ToLower(inner), "resync")):
		return apiary.E(apiary.KindInvalid, "%s: Graph no longer honours this delta token%s: list the source in full", what, named)
	case s == http.StatusUnauthorized:
		return apiary.E(apiary.KindUnauthenticated, "%s: Graph refused the credential%s: it may have expired", what, named)
	case s == http.StatusForbidden:
		return apiary.E(apiary.KindForbidden, "%s: the credential may not read this%s", what, named)
	case s == http.StatusNotFound:
		return connectors.Gone("%s: not found at the source%s", what, named)
	case s == http.StatusTooManyRequests:
		return connectors.RetryAfter(connectors.ParseRetryAfter(resp.Header, now), "%s: Graph is throttling%s", what, named)
	case (s == http.StatusServiceUnavailable || s == 509) && connectors.ParseRetryAfter(resp.Header, now) > 0:
		return connectors.RetryAfter(connectors.ParseRetryAfter(resp.Header, now), "%s: Graph is throttling%s", what, named)
	}
	return connectors.ClassifyStatus(resp, what)
}
