package sheentest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// link is a download URL the fake object store will honour until expires.
type link struct {
	versionID string
	expires   time.Time
}

// makeArtifact builds the project's archive: a real .tar.gz of a small
// generated site (plus padding bytes, to make it as large as a test needs).
// It returns the archive and the build-output size (the files' total, which
// is what the worker reports as size).
func makeArtifact(projectID, prompt string, padding int64) ([]byte, int64) {
	files := []struct {
		name string
		data []byte
	}{
		{"package.json", fmt.Appendf(nil, `{"name":%q,"private":true,"scripts":{"build":"vite build"}}`+"\n", projectID)},
		{"index.html", fmt.Appendf(nil, "<!doctype html>\n<html><head><title>%s</title></head><body><div id=\"root\"></div><script type=\"module\" src=\"/src/main.jsx\"></script></body></html>\n", projectID)},
		{"src/main.jsx", fmt.Appendf(nil, "// Generated from the prompt: %q\nexport default function App() { return <h1>%s</h1> }\n", prompt, projectID)},
		{"README.md", fmt.Appendf(nil, "# %s\n\n%s\n", projectID, prompt)},
	}
	if padding > 0 {
		pad := make([]byte, padding)
		r := rand.New(rand.NewPCG(uint64(len(projectID)), uint64(padding)))
		for i := range pad {
			pad[i] = byte(r.Uint32())
		}
		files = append(files, struct {
			name string
			data []byte
		}{"assets/blob.bin", pad})
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	var size int64
	for _, f := range files {
		_ = tw.WriteHeader(&tar.Header{Name: projectID + "/" + f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Unix(1764142800, 0)})
		_, _ = tw.Write(f.data)
		size += int64(len(f.data))
	}
	_ = tw.Close()
	_ = gz.Close()
	return buf.Bytes(), size
}

// DropArtifact deletes a version's archive: exports of it then answer 404
// with canRebuild until it is rebuilt.
func (s *Server) DropArtifact(versionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.versions[versionID]; v != nil {
		v.artifact = nil
	}
}

// ExpireLinks makes every download link handed out so far expired: the
// object store answers 403 for them.
func (s *Server) ExpireLinks() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.links {
		l.expires = time.Time{}
	}
}

// Artifact returns a version's archive bytes, nil when it has none.
func (s *Server) Artifact(versionID string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.versions[versionID]; v != nil {
		return v.artifact
	}
	return nil
}

// LatestVersion returns the id of a project's newest version, "" if none.
func (s *Server) LatestVersion(projectID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.projects[projectID]; p != nil && len(p.versions) > 0 {
		return p.versions[len(p.versions)-1]
	}
	return ""
}

func (s *Server) handleExportProject(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	userID, ok := s.requireUser(w, r)
	if !ok {
		return
	}
	p := s.projects[r.PathValue("projectId")]
	if p == nil || p.userID != userID || len(p.versions) == 0 {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "Project not found", "message": "No exportable version for this project"})
		return
	}
	s.exportLocked(w, s.versions[p.versions[len(p.versions)-1]], p.id+"-latest.zip")
}

func (s *Server) handleDownloadVersion(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	userID, ok := s.requireUser(w, r)
	if !ok {
		return
	}
	v := s.versions[r.PathValue("versionId")]
	if v == nil || v.userID != userID {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "Version not found", "message": "Version not found"})
		return
	}
	s.exportLocked(w, v, v.id+".zip")
}

func (s *Server) requireUser(w http.ResponseWriter, r *http.Request) (string, bool) {
	userID := r.URL.Query().Get("userId")
	if userID == "" {
		validationError(w, "querystring must have required property 'userId'")
		return "", false
	}
	return userID, true
}

// exportLocked answers with a signed download link for v, or the 404 and
// 413 the worker gives. Called with s.mu held.
func (s *Server) exportLocked(w http.ResponseWriter, v *version, filename string) {
	if v.artifact == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{
			"error": "Artifact not found", "message": "The build artifact for this version is no longer available",
			"canRebuild": true, "rebuildUrl": "/v1/versions/" + v.id + "/rebuild",
		})
		return
	}
	if size := int64(len(v.artifact)); size > s.cfg.maxExportSize {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{
			"error": "Export too large", "message": "The project is too large to export",
			"size": size, "limit": s.cfg.maxExportSize, "suggestion": "Remove large assets and rebuild",
		})
		return
	}
	key := newHex(12)
	expires := s.now().Add(s.cfg.linkTTL).Truncate(time.Second)
	s.links[key] = &link{versionID: v.id, expires: expires}
	url := fmt.Sprintf("%s/_store/%s?X-Expires=%d&X-Signature=%s", s.URL, key, expires.Unix(), s.storeSignature(key, expires))
	writeJSON(w, http.StatusOK, map[string]any{
		"success": true, "downloadUrl": url, "expiresAt": expires.UTC().Format(time.RFC3339),
		"filename": filename, "size": v.outputSize,
		"version": map[string]any{"id": v.id, "prompt": v.prompt, "createdAt": v.createdAt.Format(time.RFC3339), "projectId": v.projectID},
	})
}

func (s *Server) storeSignature(key string, expires time.Time) string {
	m := hmac.New(sha256.New, []byte("store:"+s.Secret))
	m.Write([]byte(key + "\n" + strconv.FormatInt(expires.Unix(), 10)))
	return hex.EncodeToString(m.Sum(nil))
}

// handleStore is the fake object store: it checks its own signed query,
// refuses expired links with 403 and serves the archive with Range support.
func (s *Server) handleStore(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q := r.URL.Query()
	exp, _ := strconv.ParseInt(q.Get("X-Expires"), 10, 64)
	s.mu.Lock()
	l := s.links[key]
	var data []byte
	forced := false
	if l != nil {
		forced = l.expires.IsZero()
		if v := s.versions[l.versionID]; v != nil {
			data = v.artifact
		}
	}
	now := s.now()
	s.mu.Unlock()
	if l == nil || !hmac.Equal([]byte(q.Get("X-Signature")), []byte(s.storeSignature(key, time.Unix(exp, 0)))) {
		storeError(w, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
		return
	}
	if forced || !now.Before(time.Unix(exp, 0)) {
		storeError(w, "AccessDenied", "Request has expired")
		return
	}
	if data == nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+key+`"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

func storeError(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusForbidden)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>", code, msg)
}
