package local

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"slices"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/storage"
)

// The log file is a header followed by framed records:
//
//	header: "APIARYVS" | uint32 LE format version
//	record: uint32 LE payload length | uint32 LE CRC-32C of payload | payload
//
// A payload starts with its op byte:
//
//	opDim:    uvarint dim
//	opUpsert: str account | uvarint dim | uvarint n | n × (str chunk | str document |
//	          uvarint version | uvarint index | str model | str sealed | dim × float32 LE)
//	opDelete: str account | str document | uvarint keep
//	opUpsertTerms: as opUpsert, each record followed by its terms:
//	          uvarint n | n × (uvarint hash − previous hash | uvarint count)
//	opUpsertSealed: as opUpsert, each record's vector and terms replaced by
//	          str box, where box = AES-256-GCM under the account's key
//	          (Options.Keys) of the record's dim × float32 LE and terms as in
//	          opUpsertTerms, with the record's place as associated data
//	          (atrest.go)
//
// where str is a uvarint length followed by that many bytes.
const (
	logName    = "vectors.log"
	tmpName    = "vectors.log.tmp"
	lockName   = "LOCK"
	logMagic   = "APIARYVS"
	logVersion = 1
	headerSize = len(logMagic) + 4
	frameSize  = 8

	// maxRecord bounds one record (one Upsert call): a longer length field
	// can only be damage.
	maxRecord = 1 << 30
	// maxDim bounds a vector's dimension.
	maxDim = 1 << 16
	// snapshotBatch is roughly how many bytes one snapshot record holds.
	snapshotBatch = 4 << 20
)

const (
	opDim    byte = 1
	opUpsert byte = 2
	opDelete byte = 3
	// opUpsertTerms is opUpsert with each record's terms; an upsert whose
	// records have no terms is still written as opUpsert.
	opUpsertTerms byte = 4
	// opUpsertSealed is an upsert of a store opened with Options.Keys: every
	// record's vector and terms are sealed.
	opUpsertSealed byte = 5
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func header() []byte {
	b := make([]byte, 0, headerSize)
	b = append(b, logMagic...)
	return binary.LittleEndian.AppendUint32(b, logVersion)
}

// frame wraps payload in a record frame, reusing the 8 bytes reserved at the
// start of buf (payload is buf[frameSize:]).
func frame(buf []byte) []byte {
	payload := buf[frameSize:]
	binary.LittleEndian.PutUint32(buf[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[4:8], crc32.Checksum(payload, crcTable))
	return buf
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// entrySize is the encoded size of one record inside an upsert payload
// (sealed or not); the sum over live records estimates what a snapshot
// would take.
func entrySize(r *storage.VectorRecord, dim int) int64 {
	return int64(len(r.ChunkID)+len(r.Document)+len(r.Model)+len(r.Sealed)) + 4*int64(dim) + 6*binary.MaxVarintLen16 + 2*binary.MaxVarintLen64 +
		int64(len(r.Terms))*2*binary.MaxVarintLen32 + encrypt.Overhead
}

// encodeUpsert returns a framed upsert record. vec(i) gives record i's
// vector; with boxes (a store with Options.Keys) record i's vector and terms
// are written as boxes[i], sealed, instead.
func encodeUpsert(account apiary.AccountID, dim int, recs []storage.VectorRecord, vec func(i int) []float32, boxes [][]byte) []byte {
	size := frameSize + 1 + len(account) + 3*binary.MaxVarintLen64
	for i := range recs {
		size += int(entrySize(&recs[i], dim))
	}
	kind := opUpsert
	switch {
	case boxes != nil:
		kind = opUpsertSealed
	case slices.ContainsFunc(recs, func(r storage.VectorRecord) bool { return len(r.Terms) > 0 }):
		kind = opUpsertTerms
	}
	b := make([]byte, frameSize, size)
	b = append(b, kind)
	b = appendStr(b, string(account))
	b = binary.AppendUvarint(b, uint64(dim))
	b = binary.AppendUvarint(b, uint64(len(recs)))
	for i := range recs {
		r := &recs[i]
		b = appendStr(b, string(r.ChunkID))
		b = appendStr(b, string(r.Document))
		b = binary.AppendUvarint(b, r.Version)
		b = binary.AppendUvarint(b, uint64(r.Index))
		b = appendStr(b, r.Model)
		b = appendBytes(b, r.Sealed)
		switch kind {
		case opUpsertSealed:
			b = appendBytes(b, boxes[i])
		case opUpsertTerms:
			b = appendVector(b, vec(i))
			b = appendTerms(b, r.Terms)
		default:
			b = appendVector(b, vec(i))
		}
	}
	return frame(b)
}

func appendVector(b []byte, v []float32) []byte {
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

// appendTerms writes terms (sorted by hash) as their count, then each hash
// as its difference from the one before, with its count.
func appendTerms(b []byte, terms []storage.TermCount) []byte {
	b = binary.AppendUvarint(b, uint64(len(terms)))
	var prev uint32
	for _, t := range terms {
		b = binary.AppendUvarint(b, uint64(t.Hash-prev))
		b = binary.AppendUvarint(b, uint64(t.Count))
		prev = t.Hash
	}
	return b
}

func encodeDelete(account apiary.AccountID, doc apiary.DocumentID, keep uint64) []byte {
	b := make([]byte, frameSize, frameSize+1+len(account)+len(doc)+3*binary.MaxVarintLen64)
	b = append(b, opDelete)
	b = appendStr(b, string(account))
	b = appendStr(b, string(doc))
	b = binary.AppendUvarint(b, keep)
	return frame(b)
}

func encodeDim(dim int) []byte {
	b := make([]byte, frameSize, frameSize+1+binary.MaxVarintLen64)
	b = append(b, opDim)
	b = binary.AppendUvarint(b, uint64(dim))
	return frame(b)
}

// op is one decoded log record.
type op struct {
	kind    byte
	account apiary.AccountID
	dim     int
	recs    []storage.VectorRecord // opUpsert*; Account is set to account
	// boxes are the sealed vectors and terms of opUpsertSealed's recs (whose
	// Vector and Terms are nil until opened). They share the payload's
	// buffer: valid only until replay reads the next record.
	boxes [][]byte
	doc   apiary.DocumentID // opDelete
	keep  uint64            // opDelete
}

var errDecode = errors.New("malformed record")

// decoder reads fields from a payload; the first failure sticks in err.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errDecode
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errDecode
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) str() string { return string(d.bytes()) }

// vector reads dim float32s.
func (d *decoder) vector(dim int) []float32 {
	if d.err == nil && len(d.b) < 4*dim {
		d.err = errDecode
	}
	if d.err != nil {
		return nil
	}
	v := make([]float32, dim)
	for j := range v {
		v[j] = math.Float32frombits(binary.LittleEndian.Uint32(d.b[4*j:]))
	}
	d.b = d.b[4*dim:]
	return v
}

// end fails unless every byte was read.
func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errDecode
	}
	return d.err
}

// terms reads a record's terms, checking them as Upsert does.
func (d *decoder) terms() []storage.TermCount {
	n := d.uvarint()
	if d.err != nil || n == 0 {
		return nil
	}
	if n > storage.MaxTerms || n > uint64(len(d.b)) {
		d.err = errDecode
		return nil
	}
	out := make([]storage.TermCount, n)
	var prev uint64
	for i := range out {
		h := prev + d.uvarint()
		c := d.uvarint()
		if d.err == nil && (h > storage.MaxTermHash || c == 0 || c > math.MaxUint32 || h < prev || i > 0 && h == prev) {
			d.err = errDecode
		}
		if d.err != nil {
			return nil
		}
		out[i] = storage.TermCount{Hash: uint32(h), Count: uint32(c)}
		prev = h
	}
	return out
}

func decodeOp(payload []byte) (op, error) {
	if len(payload) == 0 {
		return op{}, errDecode
	}
	o := op{kind: payload[0]}
	d := &decoder{b: payload[1:]}
	switch o.kind {
	case opDim:
		o.dim = int(min(d.uvarint(), maxDim+1))
	case opUpsert, opUpsertTerms, opUpsertSealed:
		o.account = apiary.AccountID(d.str())
		o.dim = int(min(d.uvarint(), maxDim+1))
		n := d.uvarint()
		if d.err == nil && (o.dim < 1 || o.dim > maxDim || n > uint64(len(d.b))) {
			d.err = errDecode
		}
		if d.err != nil {
			break
		}
		o.recs = make([]storage.VectorRecord, 0, n)
		for range n {
			r := storage.VectorRecord{Account: o.account}
			r.ChunkID = apiary.ChunkID(d.str())
			r.Document = apiary.DocumentID(d.str())
			r.Version = d.uvarint()
			r.Index = int(min(d.uvarint(), math.MaxInt32))
			r.Model = d.str()
			if s := d.bytes(); len(s) > 0 {
				r.Sealed = append([]byte(nil), s...)
			}
			if o.kind == opUpsertSealed {
				o.boxes = append(o.boxes, d.bytes())
			} else {
				r.Vector = d.vector(o.dim)
			}
			if o.kind == opUpsertTerms {
				r.Terms = d.terms()
			}
			if d.err != nil {
				break
			}
			o.recs = append(o.recs, r)
		}
	case opDelete:
		o.account = apiary.AccountID(d.str())
		o.doc = apiary.DocumentID(d.str())
		o.keep = d.uvarint()
	default:
		return op{}, errDecode
	}
	return o, d.end()
}

// replay reads the log at f, calling apply for each record in order. It
// returns the offset just past the last good record and whether the bytes
// after it are a torn tail (to be truncated). Damage that is not at the tail
// is an error: dropping it would silently lose acknowledged writes.
func replay(f *os.File, size int64, apply func(op) error) (good int64, torn bool, err error) {
	if size == 0 {
		return 0, false, nil
	}
	if size < int64(headerSize) {
		// A crash while the file was being created: nothing was ever
		// acknowledged from it.
		return 0, true, nil
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20)
	h := make([]byte, headerSize)
	if _, err := io.ReadFull(r, h); err != nil {
		return 0, false, fmt.Errorf("read header: %w", err)
	}
	if string(h[:len(logMagic)]) != logMagic {
		return 0, false, errors.New("not a vector log (bad magic)")
	}
	if v := binary.LittleEndian.Uint32(h[len(logMagic):]); v != logVersion {
		return 0, false, fmt.Errorf("unsupported log format version %d", v)
	}
	off := int64(headerSize)
	var fr [frameSize]byte
	var payload []byte
	for off < size {
		if size-off < frameSize {
			return off, true, nil
		}
		if _, err := io.ReadFull(r, fr[:]); err != nil {
			return off, false, fmt.Errorf("read at offset %d: %w", off, err)
		}
		n := int64(binary.LittleEndian.Uint32(fr[0:4]))
		sum := binary.LittleEndian.Uint32(fr[4:8])
		end := off + frameSize + n
		if end > size {
			return off, true, nil // the record never finished reaching the disk
		}
		if n == 0 || n > maxRecord {
			if end == size {
				return off, true, nil
			}
			return off, false, fmt.Errorf("corrupt record length at offset %d", off)
		}
		if int64(cap(payload)) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			return off, false, fmt.Errorf("read at offset %d: %w", off, err)
		}
		if crc32.Checksum(payload, crcTable) != sum {
			if end == size {
				return off, true, nil
			}
			return off, false, fmt.Errorf("checksum mismatch at offset %d", off)
		}
		o, err := decodeOp(payload)
		if err != nil {
			return off, false, fmt.Errorf("record at offset %d: %w", off, err)
		}
		if err := apply(o); err != nil {
			return off, false, fmt.Errorf("record at offset %d: %w", off, err)
		}
		off = end
	}
	return off, false, nil
}
