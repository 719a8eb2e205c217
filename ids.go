package apiary

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// AccountID names a tenant. Every record and vector belongs to exactly one.
type AccountID string

// JobID names an ingestion job; NewJobID makes them sortable by creation time.
type JobID string

// DocumentID is chosen by the caller (or derived from a file name) and is
// unique inside one account.
type DocumentID string

// ChunkID is derived from (account, document, version, index) by ChunkIDFor,
// so that a redelivered job writes the same ids and upserts replace rather
// than duplicate.
type ChunkID string

// TokenID names an API token (never the secret itself).
type TokenID string

// DefaultAccount is created on first start with an empty data dir.
const DefaultAccount AccountID = "default"

// Limits on identifiers.
const (
	MaxAccountIDLen  = 64
	MaxDocumentIDLen = 256
)

var lowerB32 = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// sortableID returns prefix + 26 base32 characters: 48 bits of milliseconds
// since the epoch followed by 80 random bits, so ids sort by creation time.
// Within one process they are strictly increasing: an id made in the same
// millisecond as the one before it takes the previous random bits plus one.
func sortableID(prefix string, now time.Time) string {
	var b [16]byte
	ms := uint64(now.UnixMilli())
	idMu.Lock()
	if ms <= idLastMs {
		ms = idLastMs
		idLast = incr80(idLast)
	} else if _, err := rand.Read(idLast[:]); err != nil {
		idMu.Unlock()
		panic("apiary: crypto/rand failed: " + err.Error())
	}
	idLastMs = ms
	binary.BigEndian.PutUint64(b[:8], ms<<16)
	copy(b[6:], idLast[:])
	idMu.Unlock()
	return prefix + lowerB32.EncodeToString(b[:])
}

var (
	idMu     sync.Mutex
	idLastMs uint64
	idLast   [10]byte
)

// incr80 adds one to a big-endian 80-bit number (wrapping, which 80 random
// bits make practically unreachable).
func incr80(r [10]byte) [10]byte {
	for i := len(r) - 1; i >= 0; i-- {
		r[i]++
		if r[i] != 0 {
			break
		}
	}
	return r
}

// RandomID returns prefix followed by a time-sortable random suffix.
func RandomID(prefix string) string { return sortableID(prefix, time.Now()) }

// NewJobID returns a fresh, time-sortable job id.
func NewJobID() JobID { return JobID(sortableID("job_", time.Now())) }

// NewAccountID returns a fresh account id.
func NewAccountID() AccountID { return AccountID(sortableID("acc_", time.Now())) }

// NewTokenID returns a fresh token id.
func NewTokenID() TokenID { return TokenID(sortableID("tok_", time.Now())) }

// ChunkIDFor derives the id of chunk index of version of a document. It is
// stable: the same inputs always give the same id, different inputs never
// collide in practice (128 bits of SHA-256).
func ChunkIDFor(account AccountID, doc DocumentID, version uint64, index int) ChunkID {
	h := sha256.New()
	h.Write([]byte(account))
	h.Write([]byte{0})
	h.Write([]byte(doc))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatUint(version, 10)))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(index)))
	return ChunkID(hex.EncodeToString(h.Sum(nil)[:16]))
}

// Validate reports whether id is a well-formed account id: 1 to 64 characters
// of a-z, 0-9, '_' and '-'.
func (id AccountID) Validate() error {
	if id == "" || len(id) > MaxAccountIDLen {
		return E(KindInvalid, "account id must be 1 to %d characters", MaxAccountIDLen)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return E(KindInvalid, "account id may hold only a-z, 0-9, '_' and '-'")
		}
	}
	return nil
}

// Validate reports whether id is a usable document id: 1 to 256 bytes of
// valid UTF-8 without control characters or surrounding spaces.
func (id DocumentID) Validate() error {
	s := string(id)
	switch {
	case s == "":
		return E(KindInvalid, "document id is required")
	case len(s) > MaxDocumentIDLen:
		return E(KindInvalid, "document id is longer than %d bytes", MaxDocumentIDLen)
	case !utf8.ValidString(s):
		return E(KindInvalid, "document id is not valid UTF-8")
	case strings.TrimSpace(s) != s:
		return E(KindInvalid, "document id must not start or end with white space")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return E(KindInvalid, "document id must not contain control characters")
		}
	}
	return nil
}

// Validate reports whether id looks like a job id (it may still not exist).
func (id JobID) Validate() error {
	if !strings.HasPrefix(string(id), "job_") || len(id) != 4+26 {
		return E(KindNotFound, "no job %q", string(id))
	}
	return nil
}
