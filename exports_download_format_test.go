package sheen

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"testing"
)

func TestDownloadDetectsFormat(t *testing.T) {
	var zipBuf bytes.Buffer
	zw := zip.NewWriter(&zipBuf)
	fw, _ := zw.Create("index.html")
	fw.Write([]byte("<h1>hi</h1>"))
	zw.Close()

	tarOf := func() []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: "index.html", Mode: 0o644, Size: 5})
		tw.Write([]byte("hello"))
		tw.Close()
		return b.Bytes()
	}
	gz := func(b []byte) []byte {
		var out bytes.Buffer
		w := gzip.NewWriter(&out)
		w.Write(b)
		w.Close()
		return out.Bytes()
	}
	v7 := tarOf()
	copy(v7[257:265], make([]byte, 8)) // drop the ustar magic: an old-style tar
	var chk int64
	for i, c := range v7[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		chk += int64(c)
	}
	copy(v7[148:156], fmt.Sprintf("%06o\x00 ", chk))

	for _, tc := range []struct {
		name    string
		content []byte
		want    ArchiveFormat
	}{
		{"zip", zipBuf.Bytes(), FormatZip},
		{"tar.gz named .zip", gz(tarOf()), FormatTarGzip},
		{"tar.gz with a big first file", gz(append(tarOf(), downloadContent(1<<20)...)), FormatTarGzip},
		{"gzip of text", gz([]byte("just some text, not a tar archive at all")), FormatGzip},
		{"tar", tarOf(), FormatTar},
		{"old tar", v7, FormatTar},
		{"text", []byte("plain text, not an archive"), FormatUnknown}, // an HTML page is refused: TestDownloadRefusesAnHTMLPage
		{"empty", nil, FormatUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.content == nil {
				tc.content = []byte{}
			}
			store := newDownloadStore(t, tc.content)
			c, _ := downloadWorker(t, store)
			var buf bytes.Buffer
			res, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), &buf, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Format != tc.want || !bytes.Equal(buf.Bytes(), tc.content) {
				t.Errorf("format %s, want %s", res.Format, tc.want)
			}
		})
	}
	// A format is also known when the first bytes arrived over a resume.
	content := gz(append(tarOf(), downloadContent(100_000)...))
	store := newDownloadStore(t, content)
	store.cut[0] = 7
	c, _ := downloadWorker(t, store)
	res, err := c.Exports.Download(context.Background(), downloadLinkFor(t, c), io.Discard, nil)
	if err != nil || res.Format != FormatTarGzip || res.Resumes != 1 {
		t.Errorf("after a resume at byte 7: %+v, %v", res, err)
	}
}

func TestDownloadFormatExt(t *testing.T) {
	for f, want := range map[ArchiveFormat]string{FormatZip: ".zip", FormatTarGzip: ".tar.gz", FormatGzip: ".gz", FormatTar: ".tar", FormatUnknown: ""} {
		if f.Ext() != want {
			t.Errorf("%s.Ext() = %q", f, f.Ext())
		}
	}
}

func FuzzDownloadDetectArchiveFormat(f *testing.F) {
	f.Add([]byte("PK\x03\x04"))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Add(make([]byte, 600))
	f.Fuzz(func(t *testing.T, b []byte) {
		switch detectArchiveFormat(b) {
		case FormatZip, FormatTarGzip, FormatGzip, FormatTar, FormatUnknown:
		default:
			t.Errorf("unknown format for %x", b)
		}
	})
}
