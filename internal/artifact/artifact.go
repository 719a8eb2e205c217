// Package artifact fetches pinned archives and takes files out of them.
//
// Promises: an archive (a .tgz, or a zip or jar) is downloaded over HTTPS, or
// plain HTTP to a loopback host, and checked against its pinned SHA-256
// before anything is taken out of it; each file taken out is checked against
// its own digest and appears whole or not at all (a temp file in the
// destination directory, renamed). Only the files an Artifact lists are
// written, under the plain file names it gives: no path inside an archive
// decides where anything is written. Files already present with their digest
// are not fetched again. Fetchers in several processes may share a
// destination directory: a lock file makes them take turns, and whoever comes
// second finds the work done. An interrupted download is resumed (HTTP
// Range) by the next fetch.
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/flock"
)

// File is one file taken out of an archive.
type File struct {
	Member string // its path inside the archive
	Name   string // its file name in the destination directory
	SHA256 string // hex digest of its content
}

// Artifact is an archive and the files to take out of it.
type Artifact struct {
	URL    string
	SHA256 string // hex digest of the whole archive
	Files  []File
}

// Defaults of a Fetcher.
const (
	DefaultMaxBytes = 1 << 30
	DefaultStall    = 60 * time.Second
)

// Fetcher fetches artifacts. The zero value is ready to use.
type Fetcher struct {
	// Client downloads. Nil: a client with connection, TLS handshake and
	// response header timeouts that follows redirects to HTTPS only.
	Client *http.Client
	// MaxBytes bounds the archive and each file taken out of it
	// (DefaultMaxBytes when 0).
	MaxBytes int64
	// Stall ends a download that receives nothing for this long
	// (DefaultStall when 0); the next fetch resumes it.
	Stall time.Duration
	// Progress, when set, is told how each download advances.
	Progress Progress
	// Mirror, when set, replaces the scheme and host of every artifact's URL
	// (its path is kept): tests serve artifacts from a local server with it.
	Mirror string

	lockBusy func() // tests: called once when another fetcher holds the lock
}

// Fetch fetches a into destDir with a default Fetcher.
func Fetch(ctx context.Context, a Artifact, destDir string, progress Progress) error {
	return Fetcher{Progress: progress}.Fetch(ctx, a, destDir)
}

// Fetch makes every file of a present in destDir (created if need be) with
// its digest: it returns at once when they are, and otherwise downloads the
// archive, checks it and takes the missing files out of it. The error is one
// line naming the URL; a network failure or a server error is
// apiary.KindUnavailable, a refused artifact (a digest that does not match,
// a missing member, a bad name) apiary.KindInvalid.
func (f Fetcher) Fetch(ctx context.Context, a Artifact, destDir string) error {
	src, err := f.source(a.URL)
	if err == nil {
		err = a.validate()
	}
	if err == nil {
		err = f.fetch(ctx, a, src, destDir)
	}
	if err != nil {
		return apiary.Wrap(err, kindOf(err), "artifact: fetch %s", src)
	}
	return nil
}

func (f Fetcher) fetch(ctx context.Context, a Artifact, src, dir string) error {
	if len(readMarks(dir).missing(dir, a.Files, false)) == 0 {
		return nil // the fast path: every file as the marks last saw it
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	unlock, err := f.lock(ctx, dir)
	if err != nil {
		return err
	}
	defer unlock()
	removeTemps(dir) // left by a fetcher that died; none runs now

	marks := readMarks(dir)
	todo := marks.missing(dir, a.Files, true)
	if len(todo) > 0 {
		archive, err := f.download(ctx, src, a.SHA256, dir)
		if err != nil {
			return err
		}
		err = extract(archive, todo, dir, f.maxBytes(), marks)
		os.Remove(archive)
		if err != nil {
			return err
		}
	}
	return marks.write(dir)
}

// source returns the URL to download from: the artifact's, or the mirror's
// with the artifact's path; it must be HTTPS or loopback HTTP.
func (f Fetcher) source(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return raw, invalid(err)
	}
	if f.Mirror != "" {
		m, err := url.Parse(f.Mirror)
		if err != nil {
			return raw, invalid(fmt.Errorf("mirror: %w", err))
		}
		m.Path = strings.TrimSuffix(m.Path, "/") + u.Path
		m.RawQuery = u.RawQuery
		u = m
	}
	return u.String(), allowed(u)
}

// allowed accepts HTTPS, and plain HTTP to a loopback host only: the
// digests are pinned, but a download should not be readable on the way.
func allowed(u *url.URL) error {
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && loopback(u.Hostname()):
		return nil
	}
	return invalid(errors.New("only https URLs are fetched (or http to a loopback host)"))
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validate refuses an artifact whose names could write outside the
// destination or clash, and digests that are not SHA-256 in hex.
func (a Artifact) validate() error {
	var errs []error
	if !isDigest(a.SHA256) {
		errs = append(errs, fmt.Errorf("archive digest %q is not a SHA-256 in hex", a.SHA256))
	}
	if len(a.Files) == 0 {
		errs = append(errs, errors.New("no files to take out"))
	}
	names, members := map[string]bool{}, map[string]bool{}
	for _, file := range a.Files {
		switch {
		case !fs.ValidPath(file.Member) || file.Member == ".":
			errs = append(errs, fmt.Errorf("member %q is not a relative path inside the archive", file.Member))
		case members[file.Member]:
			errs = append(errs, fmt.Errorf("member %q is listed twice", file.Member))
		}
		switch {
		case !plainName(file.Name):
			errs = append(errs, fmt.Errorf("file name %q is not a plain file name", file.Name))
		case names[file.Name]:
			errs = append(errs, fmt.Errorf("file name %q is listed twice", file.Name))
		}
		if !isDigest(file.SHA256) {
			errs = append(errs, fmt.Errorf("digest %q of %s is not a SHA-256 in hex", file.SHA256, file.Name))
		}
		names[file.Name], members[file.Member] = true, true
	}
	if err := errors.Join(errs...); err != nil {
		return invalid(errors.New(strings.ReplaceAll(err.Error(), "\n", "; ")))
	}
	return nil
}

// plainName reports whether name is a file name without a directory, not
// hidden (the fetcher's own files start with a dot).
func plainName(name string) bool {
	return fs.ValidPath(name) && !strings.ContainsAny(name, `/\:`) && !strings.HasPrefix(name, ".")
}

func isDigest(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size && strings.ToLower(s) == s
}

// invalid classifies err as a refused artifact.
func invalid(err error) error { return apiary.Wrap(err, apiary.KindInvalid, "") }

// unavailable classifies err as a network failure or a server error.
func unavailable(err error) error { return apiary.Wrap(err, apiary.KindUnavailable, "") }

func kindOf(err error) apiary.Kind {
	if k := apiary.KindOf(err); k != apiary.KindOther {
		return k
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return apiary.KindUnavailable
	}
	return apiary.KindOther
}

func (f Fetcher) maxBytes() int64 {
	if f.MaxBytes > 0 {
		return f.MaxBytes
	}
	return DefaultMaxBytes
}

// Files the fetcher keeps in a destination directory beside the artifact's.
const (
	lockFile   = ".lock"
	marksFile  = ".verified"
	tempPrefix = ".tmp-"
	partPrefix = ".download-" // an archive being downloaded, kept to resume
)

// lock takes the directory's lock, waiting (while ctx lasts) for another
// fetcher that holds it. The returned func releases it.
func (f Fetcher) lock(ctx context.Context, dir string) (func(), error) {
	fh, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	busy := f.lockBusy
	for {
		ok, err := flock.Try(fh)
		if err != nil {
			fh.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		if ok {
			return func() { fh.Close() }, nil
		}
		if busy != nil {
			busy()
			busy = nil
		}
		select {
		case <-ctx.Done():
			fh.Close()
			return nil, fmt.Errorf("waiting for another fetch into %s: %w", dir, context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// removeTemps removes the temp files a fetcher that died left (not its
// partial download, which is resumed).
func removeTemps(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// hashFile returns the hex SHA-256 of the file at path.
func hashFile(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// syncDir makes renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
