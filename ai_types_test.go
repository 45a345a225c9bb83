package sheen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// However a GenerateConfig is printed (every fmt verb, directly, by
// pointer, inside a slice or another struct, slog's text and JSON
// handlers, encoding/json), the secret and the URL's user info and query
// never appear, and what is set still shows.
func TestGenerateConfigRedacts(t *testing.T) {
	const query = "sig=0badc0ffee0badc0ffee"
	cfg := GenerateConfig{
		URL:          "https://runner:hunter2@claude.test/runner/generate?" + query,
		Secret:       genSecret,
		StallTimeout: 10 * time.Minute,
		Fallback:     func(context.Context, GenerateRequest) (string, error) { return "", nil },
	}
	leaks := []string{genSecret, "0badc0ffee", "hunter2", "runner:"}
	check := func(how, got string, want ...string) {
		t.Helper()
		for _, leak := range leaks {
			if strings.Contains(got, leak) {
				t.Errorf("%s shows %q: %s", how, leak, got)
			}
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s does not show %q: %s", how, w, got)
			}
		}
	}
	shown := []string{"claude.test/runner/generate", "REDACTED"}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3v", "%T %v"} {
		check(verb, fmt.Sprintf(verb, cfg))
		check(verb+" of a pointer", fmt.Sprintf(verb, &cfg))
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		check(verb, fmt.Sprintf(verb, cfg), shown...)
		check(verb+" in a slice", fmt.Sprintf(verb, []GenerateConfig{cfg}), shown...)
		check(verb+" in a struct", fmt.Sprintf(verb, struct{ Generate GenerateConfig }{cfg}), shown...)
	}
	check("String", cfg.String(), "sheen.GenerateConfig{url=https://claude.test/runner/generate?REDACTED secret=REDACTED stall=10m0s fallback}")
	check("an error", fmt.Errorf("bad config %v", cfg).Error(), shown...)

	for _, tc := range []struct {
		name  string
		h     func(*bytes.Buffer) slog.Handler
		stall string
	}{
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }, "generate.stall_timeout=10m0s"},
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }, `"stall_timeout":600000000000`},
	} {
		var buf bytes.Buffer
		logger := slog.New(tc.h(&buf))
		logger.Info("configured", "generate", cfg, "pointer", &cfg, slog.Any("any", cfg))
		check("slog "+tc.name, buf.String(), append(shown, tc.stall)...)
	}

	for how, v := range map[string]any{"value": cfg, "pointer": &cfg, "field": struct{ G GenerateConfig }{cfg}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%s): %v", how, err)
		}
		check("json "+how, string(b), `"secret":"REDACTED"`, `"stallTimeout":"10m0s"`, `"fallback":true`, `"url":"https://claude.test/runner/generate?REDACTED"`)
	}

	// Unset fields are left out; an unset secret is not shown as redacted.
	var zero GenerateConfig
	if s := zero.String(); s != "sheen.GenerateConfig{}" {
		t.Errorf("zero: %s", s)
	}
	if b, err := json.Marshal(zero); err != nil || string(b) != `{"fallback":false}` {
		t.Errorf("zero as JSON: %s %v", b, err)
	}
	var nilCfg *GenerateConfig
	if s := fmt.Sprint(nilCfg); s != "<nil>" {
		t.Errorf("nil pointer: %s", s)
	}
}
