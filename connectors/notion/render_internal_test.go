package notion

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func span(s string, href string, marks ...string) richText {
	t := richText{Type: "text", PlainText: s}
	if href != "" {
		t.Href = &href
	}
	for _, m := range marks {
		switch m {
		case "bold":
			t.Annotations.Bold = true
		case "italic":
			t.Annotations.Italic = true
		case "code":
			t.Annotations.Code = true
		case "strikethrough":
			t.Annotations.Strikethrough = true
		}
	}
	return t
}

func TestMarkdownRichText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   []richText
		want string
	}{
		{"plain", []richText{span("a *b* c", "")}, "a *b* c"},
		{"spaces outside the markers", []richText{span("x", ""), span(" bold ", "", "bold"), span("y", "")}, "x **bold** y"},
		{"only spaces", []richText{span("a", ""), span("  ", "", "bold"), span("b", "")}, "a  b"},
		{"all marks", []richText{span("t", "https://e.com", "bold", "italic", "strikethrough", "code")}, "***~~[`t`](https://e.com)~~***"},
		{"code with a backtick", []richText{span("a`b", "", "code")}, "``a`b``"},
		{"code starting with a backtick", []richText{span("`x`", "", "code")}, "`` `x` ``"},
		{"an empty link", []richText{span("t", "", "bold")}, "**t**"},
	} {
		require.Equal(t, tc.want, markdown(tc.in), tc.name)
	}
}

func TestFence(t *testing.T) {
	t.Parallel()
	require.Equal(t, "```python\nprint(1)\n```", fence("print(1)", "python"))
	require.Equal(t, "````\na ``` b\n````", fence("a ``` b", "plain text"))
	require.Equal(t, "```objective-c\nx\n```", fence("x", "objective c"))
}

// FuzzRender reads any answer to a block children request and renders its
// blocks: it never panics, and valid UTF-8 in is valid UTF-8 out.
func FuzzRender(f *testing.F) {
	f.Add([]byte(`{"object":"list","results":[{"object":"block","id":"b","type":"paragraph","has_children":false,"paragraph":{"rich_text":[{"type":"text","plain_text":"hi **there**","annotations":{"bold":true},"href":"https://x"}]}}],"next_cursor":null,"has_more":false}`))
	f.Add([]byte(`{"results":[{"type":"code","code":{"rich_text":[{"plain_text":"` + "```" + `"}],"language":"go"}},{"type":"table_row","table_row":{"cells":[[{"plain_text":"a|b\nc"}],[]]}}]}`))
	f.Add([]byte(`{"results":[{"type":"image","image":{"type":"file","file":{"url":"https://s3/x.png?sig=1"},"caption":[]}},{"type":"callout","callout":{"rich_text":[],"icon":{"type":"emoji","emoji":"💡"}}},{"type":"paragraph","paragraph":{"rich_text":"not a list"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var l list[block]
		if json.Unmarshal(data, &l) != nil {
			return
		}
		for i := range l.Results {
			b := &l.Results[i]
			out, _ := (&renderer{}).render(b, i+1)
			if utf8.Valid(data) && !utf8.ValidString(out) {
				t.Fatalf("invalid UTF-8 out of %q: %q", data, out)
			}
		}
	})
}
