package sheen

import (
	"bytes"
	"compress/gzip"
	"io"
	"strconv"
	"strings"
)

// sniffer keeps the archive's first bytes to tell its format.
type sniffer struct {
	buf [sniffLen]byte
	n   int
}

// feed records p, written at offset off, if it falls in the first bytes.
func (s *sniffer) feed(off int64, p []byte) {
	if s.n < sniffLen && off == int64(s.n) {
		s.n += copy(s.buf[s.n:], p)
	}
}

func (s *sniffer) format() ArchiveFormat { return detectArchiveFormat(s.buf[:s.n]) }

// detectArchiveFormat tells zip, tar.gz, gzip and tar apart by their first
// bytes.
func detectArchiveFormat(b []byte) ArchiveFormat {
	switch {
	case len(b) >= 4 && b[0] == 'P' && b[1] == 'K' &&
		(b[2] == 3 && b[3] == 4 || b[2] == 5 && b[3] == 6 || b[2] == 7 && b[3] == 8):
		return FormatZip
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return FormatGzip
		}
		var hdr [512]byte
		n, _ := io.ReadFull(zr, hdr[:])
		if isTarHeader(hdr[:n]) {
			return FormatTarGzip
		}
		return FormatGzip
	case isTarHeader(b):
		return FormatTar
	}
	return FormatUnknown
}

// isTarHeader reports whether b starts with a tar header: the ustar magic,
// or (old tar) a valid header checksum.
func isTarHeader(b []byte) bool {
	if len(b) < 512 {
		return len(b) >= 262 && string(b[257:262]) == "ustar"
	}
	if string(b[257:262]) == "ustar" {
		return true
	}
	field := strings.TrimRight(strings.TrimSpace(string(b[148:156])), "\x00 ")
	want, err := strconv.ParseInt(field, 8, 64)
	if err != nil || field == "" {
		return false
	}
	var sum int64
	for i, c := range b[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	return sum == want && b[0] != 0
}
