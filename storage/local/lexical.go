package local

import (
	"math"
	"sync"

	"github.com/apiaryhq/apiary/storage"
)

// lexIndex is one account's inverted index of term hashes, beside its
// shard's records. A record with terms holds a slot, a stable number that
// survives the shard moving the record in its slices; postings name slots.
// Removing a record frees its slot (its generation moves on, so that older
// postings no longer match) and leaves its postings behind until a term's
// list is more than half dead, when that list is compacted: a removal costs
// its own terms, not the length of every list it was in.
type lexIndex struct {
	terms map[uint32]*postings
	slots []lexSlot
	free  []int32 // slots to reuse
	total int64   // the sum of every record's length (records without terms count 0)
}

// postings are one term's records, live and dead.
type postings struct {
	ps   []posting
	live int // df: how many of ps are live
}

type posting struct {
	slot  int32
	gen   uint32
	count uint32
}

// lexSlot maps a slot to the record holding it.
type lexSlot struct {
	ent int32  // index into the shard's ents
	gen uint32 // bumped when the slot is freed
}

func newLexIndex() lexIndex { return lexIndex{terms: make(map[uint32]*postings)} }

// add indexes terms of the record at ent and returns its slot (-1 for a
// record without terms).
func (x *lexIndex) add(ent int, terms []storage.TermCount) int32 {
	x.total += storage.Length(terms)
	if len(terms) == 0 {
		return -1
	}
	var slot int32
	if n := len(x.free); n > 0 {
		slot = x.free[n-1]
		x.free = x.free[:n-1]
		x.slots[slot].ent = int32(ent)
	} else {
		slot = int32(len(x.slots))
		x.slots = append(x.slots, lexSlot{ent: int32(ent)})
	}
	gen := x.slots[slot].gen
	for _, t := range terms {
		p := x.terms[t.Hash]
		if p == nil {
			p = &postings{}
			x.terms[t.Hash] = p
		}
		p.ps = append(p.ps, posting{slot: slot, gen: gen, count: t.Count})
		p.live++
	}
	return slot
}

// remove unindexes a record's terms, held in slot.
func (x *lexIndex) remove(slot int32, terms []storage.TermCount) {
	x.total -= storage.Length(terms)
	if slot < 0 {
		return
	}
	x.slots[slot].gen++
	x.free = append(x.free, slot)
	for _, t := range terms {
		p := x.terms[t.Hash]
		if p == nil {
			continue // cannot happen: the record was indexed
		}
		p.live--
		switch {
		case p.live == 0:
			delete(x.terms, t.Hash)
		case len(p.ps) > 2*p.live+8:
			kept := p.ps[:0]
			for _, q := range p.ps {
				if x.slots[q.slot].gen == q.gen {
					kept = append(kept, q)
				}
			}
			clear(p.ps[len(kept):])
			p.ps = kept
		}
	}
}

// moved records that the record holding slot is now at ent.
func (x *lexIndex) moved(slot int32, ent int) {
	if slot >= 0 {
		x.slots[slot].ent = int32(ent)
	}
}

// searchLexical is an exact top-k by BM25 over the shard's records; the
// statistics are the whole shard's, whatever f narrows.
func (sh *shard) searchLexical(terms []uint32, k int, f storage.VectorFilter) []storage.Hit {
	n := float64(len(sh.ents))
	if n == 0 {
		return nil
	}
	avgdl := float64(sh.lex.total) / n
	// Scores accumulate in a slice by record (a map costs far more once a
	// common term touches most records); touched lists the records scored.
	acc := scorePool.Get().(*scoreBuf)
	defer scorePool.Put(acc)
	if cap(acc.scores) < len(sh.ents) {
		acc.scores = make([]float64, len(sh.ents))
	}
	scores := acc.scores[:len(sh.ents)]
	touched := acc.touched[:0]
	for _, h := range distinct(terms) {
		p := sh.lex.terms[h]
		if p == nil {
			continue
		}
		df := float64(p.live)
		idf := math.Log(1 + (n-df+0.5)/(df+0.5))
		for _, q := range p.ps {
			s := sh.lex.slots[q.slot]
			if s.gen != q.gen {
				continue // a removed record's posting
			}
			e := &sh.ents[s.ent]
			if f.Document != "" && e.rec.Document != f.Document {
				continue
			}
			tf := float64(q.count)
			norm := storage.BM25K1 * (1 - storage.BM25B + storage.BM25B*float64(e.length)/avgdl)
			if scores[s.ent] == 0 {
				touched = append(touched, s.ent)
			}
			scores[s.ent] += idf * tf * (storage.BM25K1 + 1) / (tf + norm)
		}
	}
	top := topK{k: k, ents: sh.ents}
	for _, i := range touched {
		top.offer(int(i), float32(scores[i]))
		scores[i] = 0
	}
	acc.touched = touched
	return sh.hits(&top, func(s float32) float32 { return s })
}

// scoreBuf is a search's accumulator, reused across searches.
type scoreBuf struct {
	scores  []float64 // by record index; all zero between searches
	touched []int32
}

var scorePool = sync.Pool{New: func() any { return &scoreBuf{} }}

// distinct returns terms without repeats, in their first order.
func distinct(terms []uint32) []uint32 {
	seen := make(map[uint32]bool, len(terms))
	out := terms[:0:0]
	for _, t := range terms {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}
