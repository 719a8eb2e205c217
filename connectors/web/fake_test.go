package web_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/connectortest"
	"github.com/apiaryhq/apiary/connectors/web"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// site is a stateful fake web site: robots.txt, a sitemap index naming a
// plain and a gzip sitemap (pages split between them), a home page linking
// every page, pages with ETag and Last-Modified answering conditional GETs
// and HEAD (their headers and Content-Length, no body), deleted pages (410), rate limits (429 with Retry-After) and a count of
// the bytes written per page.
type site struct {
	srv *httptest.Server

	mu         sync.Mutex
	pages      map[string]*page // by path
	gone       map[string]int   // path → status
	robots     string
	robotsCode int
	limits     []time.Duration // answers to rate-limit, the next first
	served     map[string]int64
	clock      time.Time
	extra      map[string]func(w http.ResponseWriter, r *http.Request) // more handlers, by path
}

type page struct {
	body  []byte
	ctype string
	etag  string
	mod   time.Time
}

func newSite(t *testing.T) *site {
	s := &site{
		pages:  map[string]*page{},
		gone:   map[string]int{},
		robots: "User-agent: *\nDisallow: /private/\n",
		served: map[string]int64{},
		clock:  time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		extra:  map[string]func(http.ResponseWriter, *http.Request){},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *site) url(path string) string { return s.srv.URL + path }

func (s *site) put(path, ctype string, body []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = s.clock.Add(time.Minute)
	sum := sha256.Sum256(body)
	s.pages[path] = &page{body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, mod: s.clock}
	delete(s.gone, path)
	return s.url(path)
}

func (s *site) handle(path string, h func(http.ResponseWriter, *http.Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.extra[path] = h
}

func (s *site) paths() []string {
	var ps []string
	for p := range s.pages {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

func (s *site) urlset(odd bool) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">`)
	for i, p := range s.paths() {
		if (i%2 == 1) == odd {
			fmt.Fprintf(&b, "\n  <url><loc>%s</loc><lastmod>%s</lastmod></url>", s.url(p), s.pages[p].mod.Format(time.RFC3339))
		}
	}
	b.WriteString("\n</urlset>\n")
	return b.Bytes()
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func (s *site) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if len(s.limits) > 0 {
		d := s.limits[0]
		s.limits = s.limits[1:]
		s.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(int(d/time.Second)))
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return
	}
	if h := s.extra[r.URL.Path]; h != nil {
		s.mu.Unlock()
		h(w, r)
		return
	}
	switch r.URL.Path {
	case "/robots.txt":
		body, code := s.robots, s.robotsCode
		s.mu.Unlock()
		if code != 0 {
			http.Error(w, "robots", code)
			return
		}
		w.Write([]byte(body))
		return
	case "/sitemap.xml":
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>%s</loc></sitemap>
  <sitemap><loc>/sitemap-b.xml.gz</loc></sitemap>
  <sitemap><loc>https://elsewhere.example/sitemap.xml</loc></sitemap>
</sitemapindex>`, s.url("/sitemap-a.xml"))
		return
	case "/sitemap-a.xml":
		b := s.urlset(false)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/xml")
		w.Write(b)
		return
	case "/sitemap-b.xml.gz":
		b := gz(s.urlset(true))
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/gzip")
		w.Write(b)
		return
	case "/":
		var b bytes.Buffer
		b.WriteString("<html><body><h1>Home</h1>")
		for _, p := range s.paths() {
			fmt.Fprintf(&b, `<a href="%s#frag">%s</a> `, p, p)
		}
		b.WriteString(`<a href="https://elsewhere.example/x">away</a> <a href="/private/secret">no</a> <a href="mailto:a@b.c">mail</a></body></html>`)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(b.Bytes())
		return
	}
	if code := s.gone[r.URL.Path]; code != 0 {
		s.mu.Unlock()
		http.Error(w, "gone", code)
		return
	}
	p := s.pages[r.URL.Path]
	s.mu.Unlock()
	if p == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", p.etag)
	w.Header().Set("Last-Modified", p.mod.Format(http.TimeFormat))
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == p.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if ims, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !p.mod.After(ims) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", p.ctype)
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Length", strconv.Itoa(len(p.body)))
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusOK)
	for b := p.body; len(b) > 0; {
		n := min(len(b), 32<<10)
		if _, err := w.Write(b[:n]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		s.mu.Lock()
		s.served[r.URL.Path] += int64(n)
		s.mu.Unlock()
		b = b[n:]
	}
}

// harness drives the fake site for connectortest, listing it from its
// sitemap index or crawling it from its home page.
type harness struct {
	*site
	crawl bool
	conn  *web.Connector
}

func newHarness(t *testing.T, crawl bool) connectortest.Harness {
	s := newSite(t)
	return &harness{site: s, crawl: crawl, conn: web.New(web.Config{AllowPrivate: true, PageSize: 5, MaxBytes: 64 << 10})}
}

func (h *harness) Connector() connectors.Connector { return h.conn }
func (h *harness) PageSize() int                   { return 5 }
func (h *harness) MaxBytes() int64                 { return 64 << 10 }

func (h *harness) Source() connectors.Source {
	if h.crawl {
		return connectors.Source{Location: h.url("/")}
	}
	return connectors.Source{Location: h.url("/sitemap.xml")}
}

func (h *harness) Put(_ *testing.T, name string, content []byte) string {
	return h.put("/docs/"+name, "text/html; charset=iso-8859-1", content)
}

func (h *harness) Delete(_ *testing.T, id string) {
	path := strings.TrimPrefix(id, h.srv.URL)
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.pages, path)
	h.gone[path] = http.StatusGone
}

func (h *harness) ExpireCredential(*testing.T) bool { return false }

func (h *harness) RateLimit(_ *testing.T, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.limits = append(h.limits, d)
}

func (h *harness) Served(id string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.served[strings.TrimPrefix(id, h.srv.URL)]
}

func TestConformanceSitemap(t *testing.T) {
	t.Parallel()
	connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newHarness(t, false) })
}

func TestConformanceCrawl(t *testing.T) {
	t.Parallel()
	connectortest.Run(t, func(t *testing.T) connectortest.Harness { return newHarness(t, true) })
}
