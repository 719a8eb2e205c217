package chunk_test

import (
	"fmt"

	"github.com/apiaryhq/apiary/pipeline/chunk"
)

func ExampleSplit() {
	text := "Apiary ingests documents.\n\nIt chunks them, embeds them and seals them. Then it stores them."
	for _, p := range chunk.Split(chunk.Config{Size: 10, Overlap: 2}, text) {
		fmt.Printf("[%d:%d] %q\n", p.Start, p.End, p.Text)
	}
	// Output:
	// [0:25] "Apiary ingests documents."
	// [27:70] "It chunks them, embeds them and seals them."
	// [65:91] "them. Then it stores them."
}
