package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// defaultClient bounds each phase of a request but not the whole, which may
// be a large download on a slow line; a download that stalls is ended by
// the Fetcher's Stall.
var defaultClient = &http.Client{
	Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ForceAttemptHTTP2:     true,
	},
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("more than 10 redirects")
		}
		return allowed(req.URL)
	},
}

var (
	errStalled      = errors.New("the download stalled")
	errRangeRefused = errors.New("the server refused to resume: the partial download is not shorter than the archive")
)

// download downloads the archive at src into a part file in dir, resuming
// one an earlier fetch left, and returns the part file's path once its
// digest is want. A resumed download whose digest is wrong (the part file
// was not a beginning of this archive) is done once more from the start.
func (f Fetcher) download(ctx context.Context, src, want, dir string) (string, error) {
	part := filepath.Join(dir, partPrefix+want[:16])
	for fresh := false; ; fresh = true {
		if fresh {
			os.Remove(part)
		}
		resumed, err := f.get(ctx, src, part)
		if errors.Is(err, errRangeRefused) && !fresh {
			continue
		}
		if err != nil {
			return "", err
		}
		sum, err := hashFile(part)
		if err != nil {
			return "", err
		}
		if sum == want {
			return part, nil
		}
		if !resumed || fresh {
			os.Remove(part)
			return "", invalid(fmt.Errorf("archive sha256 %s, want %s", sum, want))
		}
	}
}

// get appends to the part file what src has beyond it (all of src when the
// server ignores the range) and reports whether it resumed. A download cut
// short leaves the part file for the next get; one over the size bound
// removes it.
func (f Fetcher) get(ctx context.Context, src, part string) (resumed bool, err error) {
	var have int64
	if st, err := os.Stat(part); err == nil {
		have = st.Size()
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := f.Stall
	if stall <= 0 {
		stall = DefaultStall
	}
	watchdog := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer watchdog.Stop()

	resp, err := f.request(ctx, src, have)
	if err != nil {
		return false, f.transportError(ctx, err, stall)
	}
	defer resp.Body.Close()
	total := resp.ContentLength
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, size, err := contentRange(resp.Header.Get("Content-Range"))
		if err != nil || start != have {
			return false, fmt.Errorf("answered a range request with %q", resp.Header.Get("Content-Range"))
		}
		total, resumed = size, true
	case http.StatusOK:
		have = 0
	case http.StatusRequestedRangeNotSatisfiable:
		return false, errRangeRefused
	default:
		err := fmt.Errorf("status %s", resp.Status)
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return false, unavailable(err)
		}
		return false, err
	}
	max := f.maxBytes()
	if total > max {
		os.Remove(part)
		return false, invalid(fmt.Errorf("the archive is %d bytes, more than the %d allowed", total, max))
	}

	fh, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return false, err
	}
	defer func() {
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
	}()
	if err := fh.Truncate(have); err != nil { // 0 when the server sends it all
		return false, err
	}
	if _, err := fh.Seek(have, io.SeekStart); err != nil {
		return false, err
	}
	p := newMeter(f.Progress, src, have, total)
	body := &stallReader{r: resp.Body, stall: stall, watchdog: watchdog}
	n, err := io.Copy(fh, io.TeeReader(io.LimitReader(body, max-have+1), p))
	p.end()
	switch {
	case err != nil:
		return false, f.transportError(ctx, err, stall)
	case have+n > max:
		os.Remove(part)
		return false, invalid(fmt.Errorf("the archive is more than the %d bytes allowed", max))
	case total >= 0 && have+n != total:
		return false, unavailable(fmt.Errorf("the download ended after %d of %d bytes", have+n, total))
	}
	return resumed, fh.Sync()
}

func (f Fetcher) request(ctx context.Context, src string, from int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, err
	}
	// The bytes as stored: a transparently decompressed body could not be
	// resumed by offset.
	req.Header.Set("Accept-Encoding", "identity")
	if from > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", from))
	}
	client := f.Client
	if client == nil {
		client = defaultClient
	}
	return client.Do(req)
}

// transportError says why a request or a body failed, without repeating
// the URL that the caller's message names.
func (f Fetcher) transportError(ctx context.Context, err error, stall time.Duration) error {
	if errors.Is(context.Cause(ctx), errStalled) {
		return unavailable(fmt.Errorf("nothing received for %s", stall))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return unavailable(err)
}

// contentRange parses "bytes START-END/SIZE".
func contentRange(v string) (start, size int64, err error) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	span, sizeText, ok2 := strings.Cut(rest, "/")
	startText, _, ok3 := strings.Cut(span, "-")
	if !ok || !ok2 || !ok3 {
		return 0, 0, fmt.Errorf("content-range %q", v)
	}
	if start, err = strconv.ParseInt(startText, 10, 64); err != nil {
		return 0, 0, err
	}
	size = -1
	if sizeText != "*" {
		if size, err = strconv.ParseInt(sizeText, 10, 64); err != nil {
			return 0, 0, err
		}
	}
	return start, size, nil
}

// stallReader restarts the stall watchdog whenever bytes arrive.
type stallReader struct {
	r        io.Reader
	stall    time.Duration
	watchdog *time.Timer
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.watchdog.Reset(s.stall)
	}
	return n, err
}

// meter tells a Progress how a download advances: at its start, at most
// every reportEvery while bytes arrive, and at its end.
type meter struct {
	progress   Progress
	url        string
	done       int64
	from       int64
	total      int64
	start      time.Time
	lastReport time.Time
}

const reportEvery = 100 * time.Millisecond

func newMeter(p Progress, url string, from, total int64) *meter {
	m := &meter{progress: p, url: url, done: from, from: from, total: total, start: time.Now()}
	m.report(false)
	return m
}

func (m *meter) Write(b []byte) (int, error) {
	m.done += int64(len(b))
	if time.Since(m.lastReport) >= reportEvery {
		m.report(false)
	}
	return len(b), nil
}

func (m *meter) end() { m.report(true) }

func (m *meter) report(final bool) {
	if m.progress == nil {
		return
	}
	m.lastReport = time.Now()
	done := m.done
	var rate float64
	if s := time.Since(m.start).Seconds(); s > 0 {
		rate = float64(done-m.from) / s
	}
	m.progress(Report{URL: m.url, Done: done, Total: m.total, Rate: rate, Final: final})
}
