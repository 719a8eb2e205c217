package artifact

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// marks remember, per file name, the digest a file had when it was last
// hashed with its size and modification time: a file that still has both is
// not hashed again. Kept in the destination directory (marksFile).
type marks map[string]mark

type mark struct {
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
}

func readMarks(dir string) marks {
	m := marks{}
	if b, err := os.ReadFile(filepath.Join(dir, marksFile)); err == nil {
		_ = json.Unmarshal(b, &m) // unreadable marks: every file is hashed again
	}
	return m
}

// missing returns the files that are not present in dir with their digest.
// With hash, a file whose mark is stale is hashed (and marked when right);
// without, it counts as missing.
func (m marks) missing(dir string, files []File, hash bool) []File {
	var out []File
	for _, file := range files {
		if !m.present(dir, file, hash) {
			out = append(out, file)
		}
	}
	return out
}

func (m marks) present(dir string, file File, hash bool) bool {
	path := filepath.Join(dir, file.Name)
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return false
	}
	if m[file.Name] == (mark{file.SHA256, st.Size(), st.ModTime().UnixNano()}) {
		return true
	}
	if !hash {
		return false
	}
	if sum, err := hashFile(path); err != nil || sum != file.SHA256 {
		return false
	}
	m[file.Name] = mark{file.SHA256, st.Size(), st.ModTime().UnixNano()}
	return true
}

// mark records the digest of the file now at dir/name.
func (m marks) mark(dir, name, sum string) error {
	st, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	m[name] = mark{sum, st.Size(), st.ModTime().UnixNano()}
	return nil
}

// write saves the marks atomically.
func (m marks) write(dir string) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return writeFile(dir, marksFile, b)
}

// writeFile writes b to dir/name through a temp file and a rename.
func writeFile(dir, name string, b []byte) error {
	tmp, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename: a no-op
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, name))
	}
	return err
}
