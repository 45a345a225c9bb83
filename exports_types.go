package sheen

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// DownloadLink is a pre-signed object-store URL for a project's or a
// version's archive.
//
// It is a value: ProjectLink and VersionLink hand each caller its own copy,
// which the caller may change without touching what the cache or any other
// caller holds. The zero DownloadLink has no URL; Download refuses it.
//
// The URL is a bearer credential: whoever holds it can download the archive
// until it expires. It is kept out of sight: String, GoString (%#v),
// LogValue (slog) and MarshalJSON show it without its query, and printers
// that walk the struct by reflection find only a pointer. SignedURL hands it
// out on purpose.
type DownloadLink struct {
	// ExpiresAt is when the URL stops working, zero when the worker's
	// expiresAt could not be read (such a link is never cached).
	ExpiresAt time.Time
	// Filename is the name the worker suggests, for example
	// "<id>-latest.zip". The archive is often a .tar.gz whatever the name
	// says: DownloadResult.Format reports what the bytes are.
	Filename string
	// Size is the build output's size in bytes as the worker reports it,
	// not the archive's; zero when not given.
	Size int64
	// Version is the version the archive holds; the zero ExportVersion
	// when the worker did not say, so Version.ID == "" tells.
	Version ExportVersion

	// signed is the pre-signed URL (valid 24 hours when issued), behind a
	// pointer so that fmt, printing a struct that holds a DownloadLink in
	// an unexported field, shows an address rather than the credential.
	// The string it points to is never changed, so copies of a link share
	// it safely.
	signed *string

	// from is the request the link answered, so that a download can fetch
	// a fresh one when the object store says this one has expired; zero
	// for links built by the caller.
	from linkRequest
}

// ExportVersion is the version an export or download link is for.
type ExportVersion struct {
	ID        string
	Prompt    string
	CreatedAt time.Time
	// ProjectID is set on version downloads.
	ProjectID string
}

// isZero reports whether v says nothing (the worker gave no version).
func (v ExportVersion) isZero() bool {
	return v.ID == "" && v.Prompt == "" && v.CreatedAt.IsZero() && v.ProjectID == ""
}

// ArtifactMissingError is a 404 from an export endpoint whose body says
// whether the archive can be rebuilt (canRebuild, rebuildUrl): the version
// exists but its build output is gone. It wraps the *APIError, so
// errors.As(err, &apiErr) and errors.Is(err, ErrNotFound) both hold.
//
// To get the archive back, call ExportsService.RebuildMissing (it rebuilds
// the version through the Builds service and waits for the build), then ask
// for the link again.
type ArtifactMissingError struct {
	*APIError
	// CanRebuild says whether the worker can rebuild the archive.
	CanRebuild bool
	// RebuildURL is where the worker says a rebuild is started, as sent
	// (it may be a path relative to the worker).
	RebuildURL string
	// VersionID is the version whose archive is gone: the one asked for,
	// or the one RebuildURL names; empty when neither says.
	VersionID string
	// UserID is the user the link was asked for.
	UserID string

	// from is the link request that failed, to drop its cache entry after
	// a rebuild.
	from linkRequest
}

// Unwrap gives errors.As the *APIError.
func (e *ArtifactMissingError) Unwrap() error { return e.APIError }

// ArchiveFormat is what an archive's first bytes say it is.
type ArchiveFormat string

// Archive formats told apart by their magic numbers.
const (
	FormatUnknown ArchiveFormat = "unknown"
	FormatZip     ArchiveFormat = "zip"
	FormatTarGzip ArchiveFormat = "tar.gz"
	// FormatGzip is gzip whose content does not start like a tar archive
	// (or could not be told from the first bytes).
	FormatGzip ArchiveFormat = "gzip"
	FormatTar  ArchiveFormat = "tar"
)

// Ext returns the usual file name extension for the format (".zip",
// ".tar.gz", ".gz", ".tar"), or "" for FormatUnknown.
func (f ArchiveFormat) Ext() string {
	switch f {
	case FormatZip:
		return ".zip"
	case FormatTarGzip:
		return ".tar.gz"
	case FormatGzip:
		return ".gz"
	case FormatTar:
		return ".tar"
	}
	return ""
}

// DownloadResult says how a download went. Download returns one even when
// it fails (past its argument checks), saying how far it got. Printing,
// logging or marshalling it shows the link's URL redacted, as DownloadLink
// does.
type DownloadResult struct {
	// Written is how many bytes reached the writer (after a restart, only
	// those written since).
	Written int64
	// Total is the archive's length as the object store announced it, -1
	// when it did not.
	Total int64
	// Format is what the archive's first bytes say it is, whatever its
	// filename says.
	Format ArchiveFormat
	// Attempts is how many requests went to the object store.
	Attempts int
	// Resumes counts continuations with a Range request after a break.
	Resumes int
	// Restarts counts downloads begun again from the first byte because
	// the object store ignored Range (the writer was reset each time).
	Restarts int
	// LinkRefreshed says the object store refused the link and a fresh one
	// was fetched from the worker.
	LinkRefreshed bool
	// Link is the link the download finished with: the one given, or the
	// fresh one after a refresh.
	Link DownloadLink
}

// NewDownloadLink makes a link from a pre-signed URL got some other way than
// ProjectLink or VersionLink, for Download and DownloadToFile. signedURL
// must be an absolute http(s) URL; set ExpiresAt and Filename on the result
// if you know them. Such a link is not refreshed when the object store
// refuses it. On error it returns the zero DownloadLink; the error never
// quotes signedURL.
func NewDownloadLink(signedURL string) (DownloadLink, error) {
	if !isAbsoluteHTTPURL(signedURL) {
		return DownloadLink{}, &ValidationError{Field: "signedURL", Reason: "is not an absolute http(s) URL"}
	}
	return DownloadLink{signed: &signedURL}, nil
}

// SignedURL returns the pre-signed download URL, query and all.
//
// It is a bearer credential: whoever holds it can download the archive
// until ExpiresAt, with no other check. Hand it only to what must fetch the
// archive (a browser redirect, another downloader); never log it, print it,
// put it in an error or store it where others can read it. String,
// LogValue and MarshalJSON give a redacted form for those.
func (l DownloadLink) SignedURL() string {
	if l.signed == nil {
		return ""
	}
	return *l.signed
}

// redacted is the link's URL without its query.
func (l DownloadLink) redacted() string { return redactURL(l.SignedURL()) }

// String describes the link with its URL's query (the credential) replaced
// by "REDACTED".
func (l DownloadLink) String() string {
	var sb strings.Builder
	sb.WriteString("sheen.DownloadLink{")
	sb.WriteString(l.redacted())
	if l.Filename != "" {
		fmt.Fprintf(&sb, " filename=%q", l.Filename)
	}
	if l.Size > 0 {
		fmt.Fprintf(&sb, " size=%d", l.Size)
	}
	if !l.ExpiresAt.IsZero() {
		sb.WriteString(" expires=" + l.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if l.Version.ID != "" {
		sb.WriteString(" version=" + l.Version.ID)
	}
	sb.WriteString("}")
	return sb.String()
}

// GoString is String, so %#v redacts too.
func (l DownloadLink) GoString() string { return l.String() }

// LogValue makes slog log the link with its URL's query redacted.
func (l DownloadLink) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("url", l.redacted())}
	if l.Filename != "" {
		attrs = append(attrs, slog.String("filename", l.Filename))
	}
	if l.Size > 0 {
		attrs = append(attrs, slog.Int64("size", l.Size))
	}
	if !l.ExpiresAt.IsZero() {
		attrs = append(attrs, slog.Time("expires_at", l.ExpiresAt))
	}
	if l.Version.ID != "" {
		attrs = append(attrs, slog.String("version", l.Version.ID))
	}
	return slog.GroupValue(attrs...)
}

// downloadLinkJSON is how a link is marshalled: URL redacted.
type downloadLinkJSON struct {
	URL       string             `json:"url"`
	ExpiresAt time.Time          `json:"expiresAt,omitzero"`
	Filename  string             `json:"filename,omitempty"`
	Size      int64              `json:"size,omitempty"`
	Version   *exportVersionJSON `json:"version,omitempty"`
}

type exportVersionJSON struct {
	ID        string    `json:"id,omitempty"`
	Prompt    string    `json:"prompt,omitempty"`
	CreatedAt time.Time `json:"createdAt,omitzero"`
	ProjectID string    `json:"projectId,omitempty"`
}

// MarshalJSON writes the link for logs and API answers, with its URL's
// query redacted ({"url","expiresAt","filename","size","version"}). What it
// writes cannot download anything: keep SignedURL (a credential) yourself
// if a link must outlive the process.
func (l DownloadLink) MarshalJSON() ([]byte, error) {
	j := downloadLinkJSON{URL: l.redacted(), ExpiresAt: l.ExpiresAt, Filename: l.Filename, Size: l.Size}
	if v := l.Version; !v.isZero() {
		j.Version = &exportVersionJSON{ID: v.ID, Prompt: v.Prompt, CreatedAt: v.CreatedAt, ProjectID: v.ProjectID}
	}
	return json.Marshal(j)
}

// String describes the result, with the link's URL redacted.
func (r DownloadResult) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "sheen.DownloadResult{written=%d total=%d format=%s attempts=%d resumes=%d restarts=%d",
		r.Written, r.Total, r.Format, r.Attempts, r.Resumes, r.Restarts)
	if r.LinkRefreshed {
		sb.WriteString(" link_refreshed")
	}
	if r.Link.signed != nil {
		sb.WriteString(" link=" + r.Link.String())
	}
	sb.WriteString("}")
	return sb.String()
}

// GoString is String, so %#v redacts too.
func (r DownloadResult) GoString() string { return r.String() }

// LogValue makes slog log the result with the link's URL redacted.
func (r DownloadResult) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.Int64("written", r.Written),
		slog.Int64("total", r.Total),
		slog.String("format", string(r.Format)),
		slog.Int("attempts", r.Attempts),
		slog.Int("resumes", r.Resumes),
		slog.Int("restarts", r.Restarts),
		slog.Bool("link_refreshed", r.LinkRefreshed),
	}
	if r.Link.signed != nil {
		attrs = append(attrs, slog.Any("link", r.Link))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON writes the result with the link's URL redacted.
func (r DownloadResult) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Written       int64         `json:"written"`
		Total         int64         `json:"total"`
		Format        ArchiveFormat `json:"format"`
		Attempts      int           `json:"attempts"`
		Resumes       int           `json:"resumes"`
		Restarts      int           `json:"restarts"`
		LinkRefreshed bool          `json:"linkRefreshed"`
		Link          *DownloadLink `json:"link,omitempty"`
	}{r.Written, r.Total, r.Format, r.Attempts, r.Resumes, r.Restarts, r.LinkRefreshed, r.linkOrNil()})
}

// linkOrNil is r's link, nil when it has none (a zero DownloadResult).
func (r DownloadResult) linkOrNil() *DownloadLink {
	if r.Link.signed == nil {
		return nil
	}
	return &r.Link
}

// redactURL returns u without user info, query or fragment; a present query
// becomes "?REDACTED". Something that does not parse is not shown at all.
func redactURL(u string) string {
	if u == "" {
		return "<no url>"
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "<unparseable url>"
	}
	s := p.Scheme + "://" + p.Host + p.EscapedPath()
	if p.RawQuery != "" || p.ForceQuery {
		s += "?REDACTED"
	}
	return s
}
