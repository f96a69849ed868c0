package clip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	ja := "データベースに接続できません" // 3 bytes a character
	cases := []struct {
		name string
		fn   func(string, int) string
		in   string
		n    int
		want string
	}{
		{"end fits", End, "short", 5, "short"},
		{"end ascii", End, "abcdefgh", 7, "abcd…"},
		{"end japanese", End, ja, 8, "デ…"},
		{"end japanese, cut falls inside a character", End, ja, 10, "デー…"},
		{"end smaller than the marker", End, ja, 2, "…"},
		{"prefix japanese", Prefix, ja, 8, "デー"},
		{"prefix negative", Prefix, ja, -1, ""},
		{"middle keeps both ends", Middle, "open /very/long/path: no space left on device", 30, "open /ver…ace left on device"},
		{"middle japanese", Middle, ja, 16, "デ…ません"},
		{"line collapses white space", Line, "a\n  b\tc", 10, "a b c"},
		{"line japanese", Line, "エラー:\n" + ja, 14, "エラー: …"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.fn(c.in, c.n)
			if got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("%q is not valid UTF-8", got)
			}
			if len(got) > max(c.n, len(Ellipsis)) {
				t.Errorf("%q is %d bytes, over %d", got, len(got), c.n)
			}
		})
	}
}

// Every cut of a mixed string stays valid UTF-8 and within its limit.
func TestClipEveryLength(t *testing.T) {
	s := strings.Repeat("警告 disk 使用率 91.3% ", 3)
	for n := 0; n <= len(s)+1; n++ {
		for name, fn := range map[string]func(string, int) string{"End": End, "Middle": Middle, "Prefix": Prefix} {
			got := fn(s, n)
			if !utf8.ValidString(got) {
				t.Fatalf("%s(%d) = %q: not valid UTF-8", name, n, got)
			}
			if len(got) > max(n, len(Ellipsis)) {
				t.Fatalf("%s(%d) = %q: %d bytes", name, n, got, len(got))
			}
		}
	}
}
