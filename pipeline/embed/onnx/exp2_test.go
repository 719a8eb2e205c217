package onnx

import "testing"

func TestExpSpecial(t *testing.T) {
	w := tokenizerOf(t, int8Model)
	for _, s := range []string{"x [SEP] y [sep]", "[SEP] [CLS]x[PAD] ", "[SEP] [CLS]x[PAD] [SEP] [CLS]x[PAD] ", "a [CLS] b", "[CLS]", "x[PAD]", "[PAD] [SEP]"} {
		enc, _ := w.tk.EncodeSingle(s, true)
		t.Logf("%q: %v", s, enc.Tokens)
	}
}
