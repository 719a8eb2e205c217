package local

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// maybeCompact rewrites the log when it has grown past CompactRatio times
// the live size, sealing with the keys of key. Caller holds the writer's
// place (or is Open).
func (s *Store) maybeCompact(key keyFunc) {
	if s.failed != nil || s.size < s.nextCompact ||
		float64(s.size) <= s.opts.CompactRatio*float64(s.live+int64(headerSize)) {
		return
	}
	s.compactLogged(key)
}

// compactLogged compacts the log. A failure is logged and retried once the
// log has grown by another CompactMinBytes: the write that triggered it is
// already durable.
func (s *Store) compactLogged(key keyFunc) {
	if s.failed != nil {
		return
	}
	before := s.size
	if err := s.compact(key); err != nil {
		s.opts.Logger.Error("local: vector log compaction failed", "dir", s.dir, "err", err)
		s.nextCompact = s.size + s.opts.CompactMinBytes
		return
	}
	s.nextCompact = s.opts.CompactMinBytes
	s.opts.Logger.Debug("local: compacted vector log", "dir", s.dir, "from", before, "to", s.size)
}

// compact writes a snapshot of the live records to a temporary file, fsyncs
// it, renames it over the log and fsyncs the directory. The renamed file's
// descriptor becomes the log. With Options.Keys every record is sealed
// under its account's key (from key), and the accounts whose key is gone
// are left out, and then dropped from memory. Caller holds the writer's
// place: nothing changes meanwhile.
func (s *Store) compact(key keyFunc) (err error) {
	tmp := filepath.Join(s.dir, tmpName)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create snapshot: %w", err)
	}
	renamed := false
	defer func() {
		if err != nil && !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()

	w := bufio.NewWriterSize(f, 1<<20)
	var n int64
	write := func(p []byte) error {
		m, err := w.Write(p)
		n += int64(m)
		return err
	}
	if err := write(header()); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if s.dim > 0 {
		if err := write(encodeDim(s.dim)); err != nil {
			return fmt.Errorf("write snapshot: %w", err)
		}
	}
	var gone []apiary.AccountID
	for _, account := range s.sortedAccounts() {
		sh := s.accounts[account]
		var k []byte
		if s.opts.Keys != nil {
			if k, err = key(account); err != nil {
				return err
			}
			if k == nil {
				gone = append(gone, account)
				continue
			}
		}
		for start := 0; start < len(sh.ents); {
			end, size := start, int64(0)
			for end < len(sh.ents) && (end == start || size+sh.ents[end].size <= snapshotBatch) {
				size += sh.ents[end].size
				end++
			}
			recs := make([]storage.VectorRecord, end-start)
			for j := range recs {
				recs[j] = sh.ents[start+j].rec
			}
			boxes, err := sh.seal(k, account, start, recs)
			if err != nil {
				return err
			}
			rec := encodeUpsert(account, s.dim, recs, func(j int) []float32 { return sh.vector(start + j) }, boxes)
			if err := write(rec); err != nil {
				return fmt.Errorf("write snapshot: %w", err)
			}
			start = end
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync snapshot: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, logName)); err != nil {
		return fmt.Errorf("rename snapshot: %w", err)
	}
	// From here f is the log, whatever happens.
	renamed = true
	old := s.log
	s.log, s.size = f, n
	old.Close()
	if err := syncDir(s.dir); err != nil {
		// Unless the rename is durable, a crash would bring back the old
		// log without the records appended from now on.
		s.failed = err
		return err
	}
	s.deleted = 0
	s.drop(gone)
	return nil
}

// seal returns the boxes of recs, the shard's records from start, under
// key; nil for a nil key.
func (sh *shard) seal(key []byte, account apiary.AccountID, start int, recs []storage.VectorRecord) ([][]byte, error) {
	if key == nil {
		return nil, nil
	}
	boxes := make([][]byte, len(recs))
	for j := range recs {
		r := recs[j]
		r.Vector = sh.vector(start + j)
		var err error
		if boxes[j], err = sealRecord(key, account, &r); err != nil {
			return nil, err
		}
	}
	return boxes, nil
}

// drop forgets the accounts whose key is gone, once the log no longer holds
// them. Caller holds the writer's place.
func (s *Store) drop(gone []apiary.AccountID) {
	if len(gone) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, account := range gone {
		sh := s.accounts[account]
		for i := range sh.ents {
			s.live -= sh.ents[i].size
		}
		delete(s.accounts, account)
		s.opts.Logger.Warn("the account's key is gone: its vectors are dropped", "dir", s.dir, "account", account, "records", len(sh.ents))
	}
}
