package local

import (
	"container/heap"
	"math"
	"slices"
	"strings"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// shard holds one account's records. Vectors live in one flat slab, record
// i at vecs[i*dim:(i+1)*dim], exactly as given, beside the inverse of their
// length computed at upsert: a search is one dot product per record over
// contiguous memory, scaled by that inverse. Deleting swaps the last record
// into the hole.
type shard struct {
	dim  int
	ids  map[apiary.ChunkID]int // index into ents and the slab
	ents []entry
	vecs []float32
	invs []float32 // invs[i] = 1/|vector i|, 0 for a zero vector (which scores 0)
	docs map[apiary.DocumentID]map[apiary.ChunkID]struct{}
	lex  lexIndex // the records' terms (lexical.go)
}

// entry is a stored record without its vector (which is in the slab).
type entry struct {
	rec    storage.VectorRecord // Vector is nil; Sealed and Terms are the store's own copies
	size   int64                // encoded size, for the live-size estimate
	length int64                // the sum of the term counts
	slot   int32                // the record's slot in lex, -1 without terms
}

func newShard(dim int) *shard {
	return &shard{
		dim:  dim,
		ids:  make(map[apiary.ChunkID]int),
		docs: make(map[apiary.DocumentID]map[apiary.ChunkID]struct{}),
		lex:  newLexIndex(),
	}
}

// put inserts or replaces r (copying what it keeps) and returns the change
// in live size.
func (sh *shard) put(r *storage.VectorRecord) int64 {
	e := entry{rec: *r, size: entrySize(r, sh.dim), length: storage.Length(r.Terms)}
	e.rec.Vector = nil
	e.rec.Sealed = slices.Clone(r.Sealed)
	e.rec.Terms = slices.Clone(r.Terms)
	var inv float32
	if n := norm(r.Vector); n > 0 {
		inv = float32(1 / n)
	}

	i, ok := sh.ids[r.ChunkID]
	var delta int64
	if ok {
		old := &sh.ents[i]
		delta -= old.size
		if old.rec.Document != r.Document {
			sh.unindex(old.rec.Document, r.ChunkID)
		}
		sh.lex.remove(old.slot, old.rec.Terms)
		e.slot = sh.lex.add(i, e.rec.Terms)
		sh.ents[i] = e
	} else {
		i = len(sh.ents)
		sh.ids[r.ChunkID] = i
		e.slot = sh.lex.add(i, e.rec.Terms)
		sh.ents = append(sh.ents, e)
		sh.vecs = append(sh.vecs, make([]float32, sh.dim)...)
		sh.invs = append(sh.invs, 0)
	}
	sh.invs[i] = inv
	copy(sh.vecs[i*sh.dim:(i+1)*sh.dim], r.Vector)
	set := sh.docs[r.Document]
	if set == nil {
		set = make(map[apiary.ChunkID]struct{})
		sh.docs[r.Document] = set
	}
	set[r.ChunkID] = struct{}{}
	return delta + e.size
}

func (sh *shard) unindex(doc apiary.DocumentID, id apiary.ChunkID) {
	set := sh.docs[doc]
	delete(set, id)
	if len(set) == 0 {
		delete(sh.docs, doc)
	}
}

// hasOtherVersion reports whether deleteDocument(doc, keep) would remove anything.
func (sh *shard) hasOtherVersion(doc apiary.DocumentID, keep uint64) bool {
	for id := range sh.docs[doc] {
		if keep == 0 || sh.ents[sh.ids[id]].rec.Version < keep {
			return true
		}
	}
	return false
}

// deleteDocument removes doc's records of versions older than keep (all
// when keep is 0) and returns how many and the live size they took.
func (sh *shard) deleteDocument(doc apiary.DocumentID, keep uint64) (n int, freed int64) {
	for id := range sh.docs[doc] {
		i := sh.ids[id]
		if keep != 0 && sh.ents[i].rec.Version >= keep {
			continue
		}
		freed += sh.ents[i].size
		sh.remove(i)
		sh.unindex(doc, id)
		n++
	}
	return n, freed
}

// remove drops record i by moving the last record into its place.
func (sh *shard) remove(i int) {
	last := len(sh.ents) - 1
	delete(sh.ids, sh.ents[i].rec.ChunkID)
	sh.lex.remove(sh.ents[i].slot, sh.ents[i].rec.Terms)
	if i != last {
		sh.ents[i] = sh.ents[last]
		sh.ids[sh.ents[i].rec.ChunkID] = i
		sh.lex.moved(sh.ents[i].slot, i)
		copy(sh.vecs[i*sh.dim:(i+1)*sh.dim], sh.vecs[last*sh.dim:])
		sh.invs[i] = sh.invs[last]
	}
	sh.ents[last] = entry{} // let the collector have the Sealed bytes
	sh.ents = sh.ents[:last]
	sh.vecs = sh.vecs[:last*sh.dim]
	sh.invs = sh.invs[:last]
}

// vector returns record i's vector (shared: callers copy it or only read it).
func (sh *shard) vector(i int) []float32 { return sh.vecs[i*sh.dim : (i+1)*sh.dim] }

// search is an exact top-k by cosine similarity.
func (sh *shard) search(vec []float32, k int, f storage.VectorFilter) []storage.Hit {
	q := make([]float32, len(vec))
	if n := norm(vec); n > 0 {
		for j, x := range vec {
			q[j] = float32(float64(x) / n)
		}
	}

	top := topK{k: k, ents: sh.ents}
	sh.each(f, func(i int) { top.offer(i, dot(q, sh.vector(i))*sh.invs[i]) })

	return sh.hits(&top, func(s float32) float32 { return min(max(s, -1), 1) })
}

// hits empties top into hits, best first, with copies of what they hold
// (Terms left out) and their scores mapped by score.
func (sh *shard) hits(top *topK, score func(float32) float32) []storage.Hit {
	hits := make([]storage.Hit, len(top.h))
	for n := len(top.h) - 1; n >= 0; n-- { // pop worst first, fill from the back
		c := top.pop()
		e := &sh.ents[c.i]
		h := storage.Hit{VectorRecord: e.rec, Score: score(c.score)}
		h.Sealed = slices.Clone(e.rec.Sealed)
		h.Vector = slices.Clone(sh.vector(c.i))
		h.Terms = nil
		hits[n] = h
	}
	return hits
}

// each calls fn with the index of every record that matches f.
func (sh *shard) each(f storage.VectorFilter, fn func(i int)) {
	match := func(i int) {
		if f.Model == "" || sh.ents[i].rec.Model == f.Model {
			fn(i)
		}
	}
	if f.Document != "" {
		for id := range sh.docs[f.Document] {
			match(sh.ids[id])
		}
		return
	}
	for i := range sh.ents {
		match(i)
	}
}

// count returns how many records match f.
func (sh *shard) count(f storage.VectorFilter) int {
	switch {
	case f.Model == "" && f.Document != "":
		return len(sh.docs[f.Document])
	case f.Model == "":
		return len(sh.ents)
	}
	n := 0
	sh.each(f, func(int) { n++ })
	return n
}

// scan returns copies of up to limit records that match f with a ChunkID
// above after, in ChunkID order: one pass keeping the limit smallest in a
// max-heap.
func (sh *shard) scan(after apiary.ChunkID, limit int, f storage.VectorFilter) []storage.VectorRecord {
	var h idHeap
	sh.each(f, func(i int) {
		id := sh.ents[i].rec.ChunkID
		switch {
		case id <= after:
		case len(h.ids) < limit:
			heap.Push(&h, id)
		case id < h.ids[0]:
			h.ids[0] = id
			heap.Fix(&h, 0)
		}
	})
	slices.Sort(h.ids)
	out := make([]storage.VectorRecord, len(h.ids))
	for n, id := range h.ids {
		i := sh.ids[id]
		out[n] = sh.ents[i].rec
		out[n].Sealed = slices.Clone(sh.ents[i].rec.Sealed)
		out[n].Vector = slices.Clone(sh.vector(i))
	}
	return out
}

// idHeap is a max-heap of chunk ids (container/heap).
type idHeap struct{ ids []apiary.ChunkID }

func (h *idHeap) Len() int           { return len(h.ids) }
func (h *idHeap) Less(i, j int) bool { return h.ids[i] > h.ids[j] }
func (h *idHeap) Swap(i, j int)      { h.ids[i], h.ids[j] = h.ids[j], h.ids[i] }
func (h *idHeap) Push(x any)         { h.ids = append(h.ids, x.(apiary.ChunkID)) }
func (h *idHeap) Pop() any {
	x := h.ids[len(h.ids)-1]
	h.ids = h.ids[:len(h.ids)-1]
	return x
}

// norm is the Euclidean length of v, accumulated in float64.
func norm(v []float32) float64 {
	var s float64
	for _, f := range v {
		s += float64(f) * float64(f)
	}
	return math.Sqrt(s)
}

// dot is the inner product of two equal-length vectors, unrolled by eight.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		aa, bb := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += aa[0] * bb[0]
		s1 += aa[1] * bb[1]
		s2 += aa[2] * bb[2]
		s3 += aa[3] * bb[3]
		s4 += aa[4] * bb[4]
		s5 += aa[5] * bb[5]
		s6 += aa[6] * bb[6]
		s7 += aa[7] * bb[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3) + (s4 + s5) + (s6 + s7)
}

type cand struct {
	i     int
	score float32
}

// topK keeps the k best candidates in a min-heap: the root is the worst
// kept, so a new candidate only has to beat it.
type topK struct {
	k    int
	h    []cand
	ents []entry
}

// worse orders candidates: lower score, then larger ChunkID, is worse.
func (t *topK) worse(a, b cand) bool {
	if a.score != b.score {
		return a.score < b.score
	}
	return strings.Compare(string(t.ents[a.i].rec.ChunkID), string(t.ents[b.i].rec.ChunkID)) > 0
}

func (t *topK) offer(i int, score float32) {
	c := cand{i: i, score: score}
	if len(t.h) < t.k {
		t.h = append(t.h, c)
		t.up(len(t.h) - 1)
		return
	}
	if !t.worse(t.h[0], c) {
		return
	}
	t.h[0] = c
	t.down(0)
}

func (t *topK) pop() cand {
	c := t.h[0]
	last := len(t.h) - 1
	t.h[0] = t.h[last]
	t.h = t.h[:last]
	if last > 0 {
		t.down(0)
	}
	return c
}

func (t *topK) up(j int) {
	for j > 0 {
		p := (j - 1) / 2
		if !t.worse(t.h[j], t.h[p]) {
			return
		}
		t.h[j], t.h[p] = t.h[p], t.h[j]
		j = p
	}
}

func (t *topK) down(j int) {
	n := len(t.h)
	for {
		l := 2*j + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && t.worse(t.h[r], t.h[l]) {
			m = r
		}
		if !t.worse(t.h[m], t.h[j]) {
			return
		}
		t.h[j], t.h[m] = t.h[m], t.h[j]
		j = m
	}
}
