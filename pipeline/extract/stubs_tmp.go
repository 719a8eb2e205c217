package extract

func extractDOCX(raw []byte, w *writer) (string, string, error)        { return "", "", nil }
func extractPPTX(raw []byte, w *writer) (string, string, []int, error) { return "", "", nil, nil }
func extractXLSX(raw []byte, w *writer) (string, string, error)        { return "", "", nil }
func extractEPUB(raw []byte, w *writer) (string, string, error)        { return "", "", nil }
func extractRTF(raw []byte, w *writer) (string, string, error)         { return "", "", nil }
func sniffZip(raw []byte) (Format, bool)                               { return "", false }
