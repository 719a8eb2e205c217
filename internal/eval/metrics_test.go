package eval

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Hand-computed: d1 (grade 2) at rank 2, d2 (grade 1) at rank 3, d4
// (grade 1) not retrieved, d5 judged not relevant.
var (
	handRanked = []string{"d3", "d1", "d2"}
	handRel    = map[string]int{"d1": 2, "d2": 1, "d4": 1, "d5": 0}
)

const eps = 1e-15

func TestNDCG(t *testing.T) {
	t.Parallel()
	// DCG@10 = 2/log2(3) + 1/log2(4) = 1.2618595… + 0.5
	// IDCG@10 = 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.6309297… + 0.5
	require.InDelta(t, 1.7618595071429148/3.1309297535714573, NDCG(handRanked, handRel, 10), eps)
	require.InDelta(t, 0.5627272554209044, NDCG(handRanked, handRel, 10), eps)
	// @2: 2/log2(3) over 2 + 1/log2(3).
	require.InDelta(t, 0.4796249331362629, NDCG(handRanked, handRel, 2), eps)
	// @1: d3 is not relevant.
	require.Zero(t, NDCG(handRanked, handRel, 1))
	// One relevant document at rank 2: 1/log2(3).
	require.InDelta(t, 0.6309297535714575, NDCG([]string{"x", "y"}, map[string]int{"y": 1}, 10), eps)
	// The ideal ranking scores 1, the grades highest first.
	require.Equal(t, 1.0, NDCG([]string{"d1", "d4", "d2"}, handRel, 10))
	// Grades out of order: d2 (1) then d1 (2): (1 + 2/log2(3)) / (2 + 1/log2(3)).
	require.InDelta(t, 0.8597186998521972, NDCG([]string{"d2", "d1"}, map[string]int{"d1": 2, "d2": 1}, 10), eps)
	require.Zero(t, NDCG(nil, handRel, 10))
	require.Zero(t, NDCG(handRanked, map[string]int{"d3": 0}, 10), "nothing relevant")
}

func TestMRR(t *testing.T) {
	t.Parallel()
	require.Equal(t, 0.5, MRR(handRanked, handRel, 10))
	require.Equal(t, 0.5, MRR(handRanked, handRel, 2))
	require.Zero(t, MRR(handRanked, handRel, 1))
	require.Equal(t, 1.0/3, MRR([]string{"a", "b", "c"}, map[string]int{"c": 1, "b": 0}, 10))
	require.Zero(t, MRR(nil, handRel, 10))
}

func TestRecall(t *testing.T) {
	t.Parallel()
	require.Equal(t, 2.0/3, Recall(handRanked, handRel, 10))
	require.Equal(t, 1.0/3, Recall(handRanked, handRel, 2))
	require.Zero(t, Recall(handRanked, handRel, 1))
	require.Equal(t, 1.0, Recall([]string{"d4", "d2", "d1"}, handRel, 100))
	require.Zero(t, Recall(handRanked, map[string]int{}, 10), "nothing relevant")
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	qrels := Qrels{
		"q1": handRel,
		"q2": {"y": 1},
		"q3": {"z": 0}, // nothing relevant: not a judged query
		"q4": {"w": 1}, // not in the run: found nothing
	}
	run := map[string][]string{"q1": handRanked, "q2": {"x", "y"}, "q3": {"z"}}
	got := Evaluate(qrels, run)
	require.Equal(t, 3, got.Queries)
	require.InDelta(t, (0.5627272554209044+0.6309297535714575)/3, got.NDCG10, eps)
	require.InDelta(t, (0.5+0.5)/3, got.MRR10, eps)
	require.InDelta(t, (2.0/3+1)/3, got.Recall10, eps)
	require.InDelta(t, (2.0/3+1)/3, got.Recall100, eps)
	require.Equal(t, Scores{}, Evaluate(Qrels{}, run))
}

func TestDedupe(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"a", "b", "c"}, Dedupe([]string{"a", "b", "a", "c", "b"}))
	require.Empty(t, Dedupe(nil))
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	// Nearest rank: the ceil(p·n)-th smallest.
	require.Equal(t, 20*time.Millisecond, Percentile(ms(40, 10, 30, 20), 0.5))
	require.Equal(t, 40*time.Millisecond, Percentile(ms(40, 10, 30, 20), 0.95))
	require.Equal(t, 10*time.Millisecond, Percentile(ms(40, 10, 30, 20), 0.25))
	require.Equal(t, 95*time.Millisecond, Percentile(ms(100, 99, 98, 97, 96, 95, 94, 93, 92, 91, 90, 89, 88, 87, 86, 85, 84, 83, 82, 81), 0.75))
	require.Equal(t, 7*time.Millisecond, Percentile(ms(7), 0.5))
	require.Zero(t, Percentile(nil, 0.5))
}
