package sheen

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// NewDownloadLink makes a link from a pre-signed URL got some other way than
// ExportProject or DownloadVersion, for DownloadTo and friends. signedURL
// must be an absolute http(s) URL; set ExpiresAt and Filename on the result
// if you know them. Such a link is not refreshed when the object store
// refuses it. The error never quotes signedURL.
func NewDownloadLink(signedURL string) (*DownloadLink, error) {
	if !isAbsoluteHTTPURL(signedURL) {
		return nil, &ValidationError{Field: "signedURL", Reason: "is not an absolute http(s) URL"}
	}
	return &DownloadLink{signed: &signedURL}, nil
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
	if l.Version != nil && l.Version.ID != "" {
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
	if l.Version != nil && l.Version.ID != "" {
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
	if v := l.Version; v != nil {
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
	if r.Link != nil {
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
	if r.Link != nil {
		attrs = append(attrs, slog.Any("link", *r.Link))
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
	}{r.Written, r.Total, r.Format, r.Attempts, r.Resumes, r.Restarts, r.LinkRefreshed, r.Link})
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
