package confluence

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/rest"
)

// Overlap is how far before a token's time a change query reaches: CQL's
// minute granularity and its index's lag.
const Overlap = time.Minute

// zoneLag is the most a time zone lags UTC: CQL's dates, read in an
// unknown site zone, are written that much earlier.
const zoneLag = 12 * time.Hour

// feedState is a change feed's token (Run 0, phase 1, no cursor) or a
// run's position between Changes pages.
type feedState struct {
	Source   uint64 `json:"s"`
	Since    int64  `json:"t"`            // unix ms: changes at or after it (less Overlap)
	Run      int64  `json:"r,omitempty"`  // unix ms: server time of the run's first answer
	Removals bool   `json:"x,omitempty"`  // phase 2
	Next     string `json:"c,omitempty"`  // Confluence's cursor in the phase
	Space    string `json:"sp,omitempty"` // the resolved space id
}

func (c *Connector) decodeFeed(src connectors.Source, tok connectors.Cursor) (feedState, error) {
	var st feedState
	if !connectors.DecodeCursor(tok, &st) || st.Source != src.Hash() || st.Since <= 0 || (st.Space != "" && !pageID.MatchString(st.Space)) {
		return feedState{}, apiary.E(apiary.KindInvalid, "confluence: the change token is not one of this source's")
	}
	return st, nil
}

// StartToken returns the token of Confluence's time now for src: the Date
// header of Confluence's answer to a one-page listing of src's most
// recently modified page, or, when the answer has no Date, that page's
// version time. The local clock is never read: a token is compared with
// Confluence's timestamps only.
func (c *Connector) StartToken(ctx context.Context, src connectors.Source) (connectors.Cursor, error) {
	s, err := parseSource(src.Location)
	if err != nil {
		return "", err
	}
	st := feedState{Source: src.Hash()}
	path, err := c.pagesPath(ctx, s, &st.Space)
	if err != nil {
		return "", err
	}
	var list v2List
	q := url.Values{"status": {"current"}, "sort": {"-modified-date"}, "limit": {"1"}}
	h, err := c.getJSON(ctx, rest.Request{Path: path, Query: q, What: "read the time"}, &list)
	if err != nil {
		return "", err
	}
	now := serverTime(h)
	if now.IsZero() && len(list.Results) > 0 {
		now = list.Results[0].Version.CreatedAt
	}
	if now.IsZero() || now.UnixMilli() <= 0 {
		return "", apiary.E(apiary.KindUnavailable, "confluence: read the time: Confluence answered no time")
	}
	st.Since = now.UnixMilli()
	return connectors.EncodeCursor(st), nil
}

func serverTime(h http.Header) time.Time {
	t, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		return time.Time{}
	}
	return t
}

// v1Search is v1's content search answer.
type v1Search struct {
	Results []struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Status  string `json:"status"`
		Title   string `json:"title"`
		Version struct {
			Number int       `json:"number"`
			When   time.Time `json:"when"`
		} `json:"version"`
	} `json:"results"`
	Links struct {
		Next string `json:"next"`
	} `json:"_links"`
}

// changesCQL is the CQL query of the pages of space key ("": all) last
// modified at or after since less Overlap, to the minute.
func (c *Connector) changesCQL(key string, since time.Time) string {
	from, zone := since.Add(-Overlap), c.cfg.SiteTimeZone
	if zone == nil {
		from, zone = from.Add(-zoneLag), time.UTC
	}
	q := "type=page"
	if key != "" {
		q += ` AND space="` + key + `"`
	}
	return q + ` AND lastmodified>="` + from.In(zone).Format("2006/01/02 15:04") + `" ORDER BY lastmodified`
}

// Changes returns one page of what changed in src after token. A run
// has two phases, each paged by Confluence's cursor:
//
//  1. What changed: v1's CQL content search,
//     GET /wiki/rest/api/content/search?cql=type=page [AND space="KEY"]
//     AND lastmodified>="yyyy/MM/dd HH:mm" ORDER BY lastmodified
//     &expand=version. CQL compares dates to the minute, in the site's
//     time zone (Config.SiteTimeZone; unknown, the window opens 12 hours
//     earlier), and its index lags the edit a little: the window opens
//     Overlap before the token's time, floored to the minute, and each
//     result's exact version time (version.when) is kept only when it is at
//     or after the token's time less Overlap. An edit within Overlap
//     before a token is listed again by the next sync (the port allows it).
//  2. What was removed: every page of src whose status is archived,
//     trashed or deleted (v2's GET …/pages?status=archived,trashed,deleted).
//     Moving a page to the trash makes no new version (a restore does), so
//     its version time cannot tell when it was trashed: every sync reports
//     the whole trash of src again, idempotent for the caller. A page purged
//     from the trash (or moved to another space, for a space source) before
//     a sync saw it in the trash is not reported: the next full listing
//     drops it.
//
// For a source of picked Items, only those pages are reported.
//
// The new token is the Date of the run's first answer: whatever changes
// while the run pages on is at or after it. An answer without a Date keeps
// the old token's time (the next sync lists the same changes again: never
// fewer).
func (c *Connector) Changes(ctx context.Context, src connectors.Source, token connectors.Cursor) (connectors.Changes, error) {
	s, err := parseSource(src.Location)
	if err != nil {
		return connectors.Changes{}, err
	}
	st, err := c.decodeFeed(src, token)
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
	keep := func(id string) bool { return pageID.MatchString(id) && (picked == nil || picked[id]) }
	if st.Removals {
		return c.removals(ctx, s, st, keep)
	}

	since := time.UnixMilli(st.Since)
	q := url.Values{
		"cql":    {c.changesCQL(s.spaceKey, since)},
		"limit":  {strconv.Itoa(c.cfg.PageSize)},
		"expand": {"version"},
	}
	if st.Next != "" {
		q.Set("cursor", st.Next)
	}
	var res v1Search
	h, err := c.getJSON(ctx, rest.Request{Path: "/wiki/rest/api/content/search", Query: q, What: "search changed pages"}, &res)
	if err != nil {
		return connectors.Changes{}, err
	}
	if st.Run == 0 {
		st.Run = -1 // no Date: the next token keeps Since
		if t := serverTime(h); !t.IsZero() && t.UnixMilli() > 0 {
			st.Run = t.UnixMilli()
		}
	}
	var out connectors.Changes
	floor := since.Add(-Overlap)
	for _, r := range res.Results {
		if r.Type != "page" || r.Status != "current" || !keep(r.ID) {
			continue
		}
		if !r.Version.When.IsZero() && r.Version.When.Before(floor) {
			continue // in CQL's coarse window, before the token
		}
		out.Items = append(out.Items, connectors.Item{
			ID: r.ID, Name: r.Title + ".md", ContentType: "text/markdown", Size: -1,
			Version: strconv.Itoa(r.Version.Number), Modified: r.Version.When,
		})
	}
	next, err := c.nextCursor(h, res.Links.Next, "search changed pages")
	if err != nil {
		return connectors.Changes{}, err
	}
	if next != "" {
		st.Next = next
	} else {
		st.Removals, st.Next = true, ""
	}
	out.Next = connectors.EncodeCursor(st)
	return out, nil
}

// removedStatuses are the statuses of pages no longer listed.
var removedStatuses = []string{"archived", "trashed", "deleted"}

// removals is a page of phase 2: src's archived, trashed and deleted
// pages; its last page names the next token.
func (c *Connector) removals(ctx context.Context, s source, st feedState, keep func(string) bool) (connectors.Changes, error) {
	path, err := c.pagesPath(ctx, s, &st.Space)
	if err != nil {
		return connectors.Changes{}, err
	}
	q := url.Values{"status": {"archived,trashed,deleted"}, "limit": {strconv.Itoa(c.cfg.PageSize)}}
	if st.Next != "" {
		q.Set("cursor", st.Next)
	}
	var list v2List
	h, err := c.getJSON(ctx, rest.Request{Path: path, Query: q, What: "list removed pages"}, &list)
	if err != nil {
		return connectors.Changes{}, err
	}
	var out connectors.Changes
	for _, p := range list.Results {
		if slices.Contains(removedStatuses, p.Status) && keep(p.ID) {
			out.Removed = append(out.Removed, p.ID)
		}
	}
	next, err := c.nextCursor(h, list.Links.Next, "list removed pages")
	if err != nil {
		return connectors.Changes{}, err
	}
	if next != "" {
		st.Next = next
		out.Next = connectors.EncodeCursor(st)
		return out, nil
	}
	tok := feedState{Source: st.Source, Since: st.Since, Space: st.Space}
	if st.Run > 0 {
		tok.Since = st.Run
	}
	out.Token = connectors.EncodeCursor(tok)
	return out, nil
}
