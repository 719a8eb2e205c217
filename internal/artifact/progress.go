package artifact

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"strings"
	"sync"
)

// Report is how far one download has come.
type Report struct {
	URL   string
	Done  int64   // bytes of the archive received, a resumed part included
	Total int64   // the archive's size; -1 when the server does not say
	Rate  float64 // bytes per second received by this download so far
	Final bool    // the download has ended, whole or not
}

// Progress is told how a download advances: once at its start, at most ten
// times a second while bytes arrive, and once at its end (Final).
type Progress func(Report)

// Terminal reports whether w is a terminal, where a Bar belongs.
func Terminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Bar draws each download as one line on w (a terminal), redrawn in place:
//
//	onnxruntime-node-1.30.0.tgz  45% [=========>           ]  51.2/108.2 MiB  8.3 MiB/s
func Bar(w io.Writer) Progress {
	const width = 24
	return func(r Report) {
		line := fmt.Sprintf("%s  %.1f MiB  %.1f MiB/s", path.Base(r.URL), mib(r.Done), mib(int64(r.Rate)))
		if r.Total > 0 {
			filled := int(float64(width) * float64(r.Done) / float64(r.Total))
			filled = min(max(filled, 0), width)
			bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
			if filled < width {
				bar = bar[:filled] + ">" + bar[filled+1:]
			}
			line = fmt.Sprintf("%s  %3d%% [%s]  %.1f/%.1f MiB  %.1f MiB/s",
				path.Base(r.URL), percent(r), bar, mib(r.Done), mib(r.Total), mib(int64(r.Rate)))
		}
		end := ""
		if r.Final {
			end = "\n"
		}
		fmt.Fprintf(w, "\r%s\x1b[K%s", line, end) // \x1b[K: clear the rest of the line
	}
}

// Log logs each download through log at Info: at its start, at every tenth
// of its size (every 10 MiB when the size is unknown), and at its end.
func Log(log *slog.Logger) Progress {
	var (
		mu   sync.Mutex
		last = map[string]int64{} // URL → last step logged
	)
	return func(r Report) {
		step := r.Done / (10 << 20)
		if r.Total > 0 {
			step = int64(percent(r) / 10)
		}
		mu.Lock()
		prev, started := last[r.URL]
		logIt := !started || step > prev || r.Final
		last[r.URL] = step
		if r.Final {
			delete(last, r.URL)
		}
		mu.Unlock()
		if !logIt {
			return
		}
		msg := "downloading"
		if r.Final {
			msg = "download ended"
		}
		attrs := []any{"url", r.URL, "mib", round1(mib(r.Done)), "mib_per_s", round1(mib(int64(r.Rate)))}
		if r.Total > 0 {
			attrs = append(attrs, "total_mib", round1(mib(r.Total)), "percent", percent(r))
		}
		log.Info(msg, attrs...)
	}
}

func percent(r Report) int { return int(100 * r.Done / r.Total) }

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func round1(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }
