package api

import (
	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/extract"
)

// canonicalType is the media type stored for each format, so that a worker
// detecting the format again from the document's content type alone (its id
// may not carry the extension) finds the same one.
var canonicalType = map[extract.Format]string{
	extract.Text:     "text/plain",
	extract.Markdown: "text/markdown",
	extract.HTML:     "text/html",
	extract.JSON:     "application/json",
	extract.CSV:      "text/csv",
	extract.PDF:      "application/pdf",
	extract.DOCX:     "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
	extract.PPTX:     "application/vnd.openxmlformats-officedocument.presentationml.presentation",
	extract.XLSX:     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
	extract.EPUB:     "application/epub+zip",
	extract.RTF:      "application/rtf",
}

// detectContentType checks that an uploaded file is in a supported format
// (415 with the supported list otherwise) and returns its media type. The
// part's content type is checked first, then the file name's extension,
// then the file's first bytes (a PDF, RTF, DOCX, PPTX, XLSX or EPUB sent as
// application/octet-stream without an extension is still recognised).
func detectContentType(filename, contentType string, data []byte) (string, error) {
	f, err := extract.DetectData(filename, contentType, data)
	if err != nil {
		return "", unsupportedMediaType("%s", apiary.Message(err))
	}
	if ct, ok := canonicalType[f]; ok {
		return ct, nil
	}
	return contentType, nil
}
