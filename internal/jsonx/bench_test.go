package jsonx

import (
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
)

// createPreview is a typical request body: about 200 bytes encoded.
type createPreview struct {
	UserID    string            `json:"userId"`
	ProjectID string            `json:"projectId"`
	Prompt    string            `json:"prompt"`
	Framework string            `json:"framework"`
	IsUpdate  bool              `json:"isUpdate"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	Files     []benchFile       `json:"files,omitempty"`
}

type benchFile struct {
	Path    string `json:"path"`
	Content string `json:"content"`
	Size    int64  `json:"size"`
}

func benchBodies() []struct {
	name string
	v    any
} {
	small := createPreview{
		UserID:    "7d1f7e52-5b0e-4c7a-9a59-2f2d0f0a6b11",
		ProjectID: "proj_0123456789abcdef",
		Prompt:    "Build a landing page for a bakery with a menu, opening hours and an order form",
		Framework: "react",
		Metadata:  map[string]string{"source": "dashboard", "locale": "en-US"},
	}
	html := small
	html.Prompt = "Build a landing page for a <bakery> with a menu & an order form"
	text, jsx := small, small
	para := "The menu lists breads, cakes and pastries — each with a photo, a price in euros and a short story.\n"
	jsxLine := "export function Menu() { return <ul className=\"menu\">{items.map(i => <li key={i.id}>{i.name} — ${i.price}</li>)}</ul> }\n"
	for i := 0; len(text.Files) < 256; i++ {
		text.Files = append(text.Files, benchFile{Path: fmt.Sprintf("docs/page%03d.md", i), Content: strings.Repeat(para, 10), Size: int64(10 * len(para))})
		jsx.Files = append(jsx.Files, benchFile{Path: fmt.Sprintf("src/components/C%03d.tsx", i), Content: strings.Repeat(jsxLine, 8), Size: int64(8 * len(jsxLine))})
	}
	// Integer-like map keys, -0, a long integer, U+2028: all rewritten.
	rewrite := map[string]any{"b": 1, "10": 2, "2": 3, "z": math.Copysign(0, -1), "n": uint64(1<<53 + 1), "s": "a\u2028b"}
	return []struct {
		name string
		v    any
	}{
		{"typical-200B", small}, {"typical-200B-with-<&>", html}, {"text-256KiB", text}, {"jsx-256KiB-with-<&>", jsx}, {"rewritten-100B", rewrite},
	}
}

// measured is one sub-benchmark's result, kept for the ratio line.
type measured struct {
	ns, allocs, bytes float64
}

// measure runs f b.N times and records its cost per call in m.
func measure(b *testing.B, m *measured, f func() error) {
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		if err := f(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	n := float64(b.N)
	*m = measured{float64(b.Elapsed().Nanoseconds()) / n, float64(after.Mallocs-before.Mallocs) / n, float64(after.TotalAlloc-before.TotalAlloc) / n}
}

// ratios reports ours against base as a sub-benchmark of its own.
func ratios(b *testing.B, base, ours *measured) {
	b.Run("ratio", func(b *testing.B) {
		b.ReportMetric(ours.ns/base.ns, "time-ratio")
		b.ReportMetric(ours.allocs-base.allocs, "extra-allocs/op")
		b.ReportMetric(ours.bytes/max(base.bytes, 1), "bytes-ratio")
		b.ReportMetric(0, "ns/op")
	})
}

// BenchmarkMarshal measures Marshal beside plain encoding/json.Marshal (the
// baseline, which escapes HTML and so is not what the worker wants) on the
// same values in the same run; the "ratio" line gives Marshal's time and
// allocated bytes as ratios of the baseline's, and its extra allocations.
// Bodies with "<&>" cost a copy: encoding/json escapes them, Marshal undoes
// that.
func BenchmarkMarshal(b *testing.B) {
	for _, body := range benchBodies() {
		b.Run(body.name, func(b *testing.B) {
			var base, ours measured
			b.Run("encoding-json", func(b *testing.B) {
				measure(b, &base, func() error { _, err := json.Marshal(body.v); return err })
			})
			b.Run("jsonx", func(b *testing.B) {
				measure(b, &ours, func() error { _, err := Marshal(body.v); return err })
			})
			ratios(b, &base, &ours)
		})
	}
}

// BenchmarkRestringify measures Restringify on encoded bodies (as the proxy
// and a fake worker call it) beside json.Valid, which only checks them.
func BenchmarkRestringify(b *testing.B) {
	for _, body := range benchBodies() {
		enc, _ := Marshal(body.v)
		b.Run(body.name, func(b *testing.B) {
			var base, ours measured
			b.Run("json.Valid", func(b *testing.B) {
				measure(b, &base, func() error { json.Valid(enc); return nil })
			})
			b.Run("jsonx", func(b *testing.B) {
				measure(b, &ours, func() error { _, err := Restringify(enc); return err })
			})
			ratios(b, &base, &ours)
		})
	}
}
