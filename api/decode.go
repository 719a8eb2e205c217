package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
)

// readBody reads the whole request body (bounded by the bodyLimit middleware).
func readBody(c echo.Context) ([]byte, error) {
	// An *http.MaxBytesError becomes 413 in problemFor.
	return io.ReadAll(c.Request().Body)
}

// mediaType returns the request's media type, lower case, without parameters.
func mediaType(c echo.Context) (string, map[string]string, error) {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if ct == "" {
		return "", nil, nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", nil, apiary.E(apiary.KindInvalid, "the Content-Type header is malformed: %v", err)
	}
	return mt, params, nil
}

func isJSON(mt string) bool {
	return mt == echo.MIMEApplicationJSON || strings.HasSuffix(mt, "+json")
}

// readJSON reads a JSON request body into v, strictly: Content-Type must be
// JSON, the body non-empty valid UTF-8 holding exactly one object with no
// unknown fields.
func readJSON(c echo.Context, v any) error {
	mt, _, err := mediaType(c)
	if err != nil {
		return err
	}
	if !isJSON(mt) {
		return unsupportedMediaType("send the body as JSON with the header \"Content-Type: application/json\"")
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// decodeJSON decodes body into v, saying where the body is wrong.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return apiary.E(apiary.KindInvalid, "the request body is empty; send a JSON object")
	}
	if !utf8.Valid(body) {
		return apiary.E(apiary.KindInvalid, "the request body is not valid UTF-8 (%s)", position(body, invalidUTF8At(body)))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return jsonError(body, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return apiary.E(apiary.KindInvalid, "malformed JSON: unexpected data after the top-level value (%s)", position(body, int(dec.InputOffset())))
	}
	return nil
}

// jsonError turns a decoding error into a caller-safe message with a
// position. It never quotes the body.
func jsonError(body []byte, err error) error {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &se):
		return apiary.E(apiary.KindInvalid, "malformed JSON at %s: %s", position(body, int(se.Offset)), se.Error())
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "the top-level value"
		} else {
			field = "field " + strconvQuote(field)
		}
		return apiary.E(apiary.KindInvalid, "wrong JSON type at %s: %s must be %s, not %s", position(body, int(te.Offset)), field, jsonTypeName(te.Type.Kind().String()), te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return apiary.E(apiary.KindInvalid, "malformed JSON: the body ends before the value does")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return apiary.E(apiary.KindInvalid, "unknown JSON field %s; see /v1/openapi.yaml for the fields this route takes", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	var ie *apiary.Error
	if errors.As(err, &ie) {
		return err
	}
	return apiary.E(apiary.KindInvalid, "malformed JSON")
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

func jsonTypeName(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	case "bool":
		return "a boolean"
	}
	return "a number"
}

// position renders a byte offset as "line L, column C (byte B)".
func position(body []byte, off int) string {
	if off > len(body) {
		off = len(body)
	}
	if off < 0 {
		off = 0
	}
	line := 1 + bytes.Count(body[:off], []byte{'\n'})
	col := off - bytes.LastIndexByte(body[:off], '\n')
	return fmt.Sprintf("line %d, column %d (byte %d)", line, col, off)
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// checkName validates a human-readable name field.
func checkName(field, s string, max int) error {
	switch {
	case strings.TrimSpace(s) == "":
		return apiary.E(apiary.KindInvalid, "%s is required", field)
	case len(s) > max:
		return apiary.E(apiary.KindInvalid, "%s is longer than %d bytes", field, max)
	case !utf8.ValidString(s):
		return apiary.E(apiary.KindInvalid, "%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return apiary.E(apiary.KindInvalid, "%s must not contain control characters", field)
		}
	}
	return nil
}

// scalarMap turns JSON metadata (strings, numbers, booleans) into strings.
func scalarMap(what string, m map[string]json.RawMessage) (map[string]string, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(m))
	for k, raw := range m {
		if k == "" {
			return nil, apiary.E(apiary.KindInvalid, "%s has an empty key", what)
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			return nil, apiary.E(apiary.KindInvalid, "%s %q has no value", what, k)
		}
		switch raw[0] {
		case '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, apiary.E(apiary.KindInvalid, "%s %q is not a valid string", what, k)
			}
			out[k] = s
		case 't', 'f':
			out[k] = string(raw)
		case '{', '[':
			return nil, apiary.E(apiary.KindInvalid, "%s %q is nested; values must be strings, numbers or booleans", what, k)
		case 'n':
			return nil, apiary.E(apiary.KindInvalid, "%s %q is null; values must be strings, numbers or booleans (leave the key out instead)", what, k)
		default: // a number, already checked by the decoder
			out[k] = string(raw)
		}
	}
	return out, nil
}
