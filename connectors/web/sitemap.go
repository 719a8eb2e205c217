package web

import (
	"bufio"
	"compress/gzip"
	"encoding/xml"
	"io"
	"strings"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
)

// entry is one <url> of a urlset or one <sitemap> of a sitemap index.
type entry struct {
	loc, lastmod string
}

// parseSitemap streams a sitemap or sitemap index (gzip-compressed or not:
// the magic bytes decide) from r, calling visit for each entry until visit
// returns false; index tells an index's entries (sitemaps) from a
// urlset's (pages). The uncompressed stream is bounded at max bytes (TooLarge
// past it); nothing but the current entry is held. isIndex reports a
// <sitemapindex>.
func parseSitemap(r io.Reader, max int64, visit func(e entry, index bool) bool) (isIndex bool, err error) {
	br := bufio.NewReader(r)
	var in io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return false, apiary.Wrap(err, apiary.KindInvalid, "web: the gzip sitemap is corrupt")
		}
		defer zr.Close()
		in = zr
	}
	in = connectors.LimitBody(io.NopCloser(in), max, "the sitemap")
	dec := xml.NewDecoder(in)
	var cur *entry
	var field *string
	root := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if root == "" {
				return false, apiary.E(apiary.KindInvalid, "web: the sitemap is empty")
			}
			return isIndex, nil
		}
		if err != nil {
			if apiary.KindOf(err) == apiary.KindTooLarge {
				return isIndex, err
			}
			return isIndex, apiary.Wrap(err, apiary.KindInvalid, "web: the sitemap is not valid XML")
		}
		switch t := tok.(type) {
		case xml.StartElement:
			name := t.Name.Local
			switch {
			case root == "":
				root = name
				if name != "urlset" && name != "sitemapindex" {
					return false, apiary.E(apiary.KindInvalid, "web: not a sitemap (root element <%s>)", name)
				}
				isIndex = name == "sitemapindex"
			case cur == nil && (name == "url" || name == "sitemap"):
				cur = &entry{}
			case cur != nil && name == "loc":
				field = &cur.loc
			case cur != nil && name == "lastmod":
				field = &cur.lastmod
			}
		case xml.CharData:
			if field != nil && len(*field)+len(t) <= maxURLLen {
				*field += string(t)
			}
		case xml.EndElement:
			switch name := t.Name.Local; {
			case name == "loc" || name == "lastmod":
				field = nil
			case cur != nil && (name == "url" || name == "sitemap"):
				e := entry{loc: strings.TrimSpace(cur.loc), lastmod: strings.TrimSpace(cur.lastmod)}
				cur = nil
				if e.loc != "" && !visit(e, isIndex) {
					return isIndex, nil
				}
			}
		}
	}
}
