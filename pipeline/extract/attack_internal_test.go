package extract

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAttackPDFCodespaceRangesAreBounded: a CMap of 200,000 codespace
// ranges. Every code shown is tried against every range of each length:
// a 30 KB PDF (the CMap and 100,000 codes, both deflated) took 117 s of
// CPU, past its context's deadline. A CMap keeps maxCodespaceRanges.
func TestAttackPDFCodespaceRangesAreBounded(t *testing.T) {
	t.Parallel()
	cm := parseCMap([]byte("begincmap " + strings.Repeat("1 begincodespacerange <00> <00> endcodespacerange\n", 200000) + "endcmap"))
	require.LessOrEqual(t, len(cm.spaces), maxCodespaceRanges)

	cm = parseCMap([]byte("2 begincodespacerange <00> <80> <8140> <9ffc> endcodespacerange"))
	require.Equal(t, []codeRange{{1, 0, 0x80}, {2, 0x8140, 0x9ffc}}, cm.spaces)
}
