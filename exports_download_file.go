package sheen

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// DownloadToFile downloads the archive behind link to path. It writes a
// temporary file in path's directory and renames it to path only when the
// download is complete, so path never holds a partial archive; on failure
// the temporary file is removed (also when the writer or a progress
// callback panics; the panic then goes on). An existing file at path is
// replaced. The file is created with mode 0600 (an archive may hold a
// project's secrets). dl and opts are as for Download.
func (s *ExportsService) DownloadToFile(ctx context.Context, link DownloadLink, path string, dl *DownloadOptions, opts ...CallOption) (*DownloadResult, error) {
	if _, _, err := s.checkDownload(ctx, link, dl, opts); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, &ValidationError{Field: "path", Reason: "is empty"}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.part")
	if err != nil {
		return nil, fmt.Errorf("sheen: DownloadToFile: %w", err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		// Also when the writer or a progress callback panics: the panic
		// goes on to the caller once the file is closed and removed.
		if !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	res, err := s.Download(ctx, link, f, dl, opts...)
	if err != nil {
		return res, err
	}
	if err = f.Sync(); err != nil {
		return res, fmt.Errorf("sheen: DownloadToFile: %w", err)
	}
	if err = f.Close(); err != nil {
		return res, fmt.Errorf("sheen: DownloadToFile: %w", err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return res, fmt.Errorf("sheen: DownloadToFile: %w", err)
	}
	renamed = true
	return res, nil
}
