package artifact

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// expansion bounds how many bytes a compressed archive may expand to, as a
// multiple of the size bound: members not taken out are read through too.
const expansion = 4

// extract takes the files out of the archive at archivePath (a gzipped tar
// or a zip, told by its first bytes), checks each one's digest, then renames
// them all into dir and marks them. On error nothing of them is left.
func extract(archivePath string, files []File, dir string, max int64, m marks) (err error) {
	want := map[string]File{}
	for _, file := range files {
		want[file.Member] = file
	}
	temps := map[string]string{} // member → its checked temp file
	defer func() {
		for _, t := range temps {
			os.Remove(t) // renamed ones are gone already
		}
	}()
	take := func(name string, regular bool, r io.Reader) error {
		file, ok := want[memberName(name)]
		if !ok || temps[file.Member] != "" {
			return nil
		}
		if !regular {
			return invalid(fmt.Errorf("member %s is not a regular file", file.Member))
		}
		tmp, err := copyChecked(dir, file, r, max)
		if err != nil {
			return err
		}
		temps[file.Member] = tmp
		return nil
	}

	fh, err := os.Open(archivePath)
	if err != nil {
		return err
	}
	defer fh.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(fh, magic); err != nil {
		return invalid(errors.New("the archive is too short to be one"))
	}
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		err = eachTarMember(fh, expansion*max, take)
	case bytes.Equal(magic, []byte("PK\x03\x04")):
		err = eachZipMember(fh, take)
	default:
		err = invalid(errors.New("the archive is neither a gzipped tar nor a zip"))
	}
	if err != nil {
		return err
	}
	var absent []string
	for _, file := range files {
		if temps[file.Member] == "" {
			absent = append(absent, file.Member)
		}
	}
	if len(absent) > 0 {
		return invalid(fmt.Errorf("not in the archive: %s", strings.Join(absent, ", ")))
	}
	for _, file := range files {
		if err := os.Rename(temps[file.Member], filepath.Join(dir, file.Name)); err != nil {
			return err
		}
		delete(temps, file.Member)
		if err := m.mark(dir, file.Name, file.SHA256); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

// memberName is a member's path as an Artifact lists it: relative, slashed,
// without "./".
func memberName(name string) string {
	return path.Clean(strings.TrimPrefix(strings.ReplaceAll(name, `\`, "/"), "./"))
}

// copyChecked copies r into a temp file in dir, at most max bytes, and
// returns its path if its digest is file's.
func copyChecked(dir string, file File, r io.Reader, max int64) (_ string, err error) {
	tmp, err := os.CreateTemp(dir, tempPrefix+file.Name+"-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, max+1))
	if err != nil {
		return "", fmt.Errorf("member %s: %w", file.Member, err)
	}
	if n > max {
		return "", invalid(fmt.Errorf("member %s is more than the %d bytes allowed", file.Member, max))
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != file.SHA256 {
		return "", invalid(fmt.Errorf("member %s has sha256 %s, want %s", file.Member, sum, file.SHA256))
	}
	if err := tmp.Chmod(0o644); err != nil {
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		return "", err
	}
	return tmp.Name(), tmp.Close()
}

// eachTarMember calls take with each member of the gzipped tar r, reading
// at most limit uncompressed bytes in all.
func eachTarMember(r io.Reader, limit int64, take func(name string, regular bool, r io.Reader) error) error {
	gz, err := gzip.NewReader(bufio.NewReader(r))
	if err != nil {
		return invalid(fmt.Errorf("gzip: %w", err))
	}
	defer gz.Close()
	bounded := &io.LimitedReader{R: gz, N: limit}
	tr := tar.NewReader(bounded)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if bounded.N <= 0 {
				return invalid(fmt.Errorf("the archive expands past %d bytes", limit))
			}
			return invalid(fmt.Errorf("tar: %w", err))
		}
		if err := take(h.Name, h.Typeflag == tar.TypeReg, tr); err != nil {
			return err
		}
	}
}

// eachZipMember calls take with each member of the zip (or jar) in fh.
func eachZipMember(fh *os.File, take func(name string, regular bool, r io.Reader) error) error {
	st, err := fh.Stat()
	if err != nil {
		return err
	}
	zr, err := zip.NewReader(fh, st.Size())
	if err != nil {
		return invalid(fmt.Errorf("zip: %w", err))
	}
	for _, zf := range zr.File {
		if err := takeZipMember(zf, take); err != nil {
			return err
		}
	}
	return nil
}

func takeZipMember(zf *zip.File, take func(name string, regular bool, r io.Reader) error) error {
	if !zf.Mode().IsRegular() {
		return take(zf.Name, false, nil)
	}
	rc, err := zf.Open()
	if err != nil {
		return invalid(fmt.Errorf("zip member %s: %w", zf.Name, err))
	}
	defer rc.Close()
	return take(zf.Name, true, rc)
}
