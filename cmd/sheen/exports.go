package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	sheen "github.com/sheenapps/sheen-go"
)

// archiveFlags are the flags export and download share.
type archiveFlags struct {
	user    string
	out     string
	rebuild bool
	force   bool
}

func (f *archiveFlags) register(cmd *cobra.Command, outHelp string) {
	cmd.Flags().StringVar(&f.user, "user", "", "the user the archive is fetched for (required)")
	cmd.Flags().StringVarP(&f.out, "out", "o", "", outHelp)
	cmd.Flags().BoolVar(&f.rebuild, "rebuild", false, "when the archive is gone, rebuild it first (a build: costs AI time)")
	cmd.Flags().BoolVar(&f.force, "force", false, "replace the file if it exists (without it an existing file is never touched: exit 11)")
	_ = cmd.MarkFlagRequired("user")
}

func (a *app) exportCommand() *cobra.Command {
	var f archiveFlags
	cmd := &cobra.Command{
		Use:   "export PROJECT --user USER [--out FILE]",
		Short: "Get a download link for a project's latest archive, or download it",
		Long: `Ask the worker for a signed link to PROJECT's latest archive. Without --out,
print the link: the URL's query is its credential, so it is redacted
unless --show-url. With --out, download the archive to FILE ("-" for
stdout). An existing FILE is never replaced unless --force: the command
stops before downloading, with exit code 11.`,
		GroupID: groupExports,
		Args:    exactArgs("PROJECT"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			return a.archive(ctx, args[0], f, false)
		}),
	}
	f.register(cmd, `download the archive to FILE ("-": stdout)`)
	return cmd
}

func (a *app) downloadCommand() *cobra.Command {
	var f archiveFlags
	cmd := &cobra.Command{
		Use:   "download VERSION --user USER [--out FILE]",
		Short: "Download a version's archive",
		Long: `Download VERSION's archive. A broken connection is resumed where it
stopped and an expired link is renewed once; FILE only ever holds a
complete archive. Without --out the file is named as the worker suggests,
with the extension of what the archive really is (often a .tar.gz named
.zip); no other file is created, renamed or replaced.

An existing file is never replaced unless --force: with --out FILE the
command stops before downloading; without --out, once the archive's
name is known, it discards the download. Both exit with code 11
(file_exists) and leave the existing file as it was.`,
		GroupID: groupExports,
		Args:    exactArgs("VERSION"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			return a.archive(ctx, args[0], f, true)
		}),
	}
	f.register(cmd, `where to save it ("-": stdout; default: the worker's file name, fixed)`)
	return cmd
}

// archive runs export (version false: id is a project) and download
// (version true: id is a version).
func (a *app) archive(ctx context.Context, id string, f archiveFlags, version bool) error {
	if f.out == "-" && a.json {
		return usagef("--out - writes the archive to stdout, where --json writes its answer: choose one")
	}
	c, err := a.connect()
	if err != nil {
		return err
	}
	link, err := a.link(ctx, c, id, f, version)
	if err != nil {
		return err
	}
	if !version && f.out == "" {
		a.printLink(id, link)
		return nil
	}
	return a.download(ctx, c, link, f.out, f.force)
}

// link asks for the archive's link; with --rebuild, an archive that is
// gone is rebuilt first.
func (a *app) link(ctx context.Context, c *sheen.WorkerClient, id string, f archiveFlags, version bool) (sheen.DownloadLink, error) {
	get := func() (sheen.DownloadLink, error) {
		if version {
			return c.Exports.VersionLink(ctx, id, f.user)
		}
		return c.Exports.ProjectLink(ctx, id, f.user)
	}
	link, err := get()
	var missing *sheen.ArtifactMissingError
	if !f.rebuild || !errors.As(err, &missing) {
		return link, err
	}
	a.notef("the archive is gone: rebuilding version %s...\n", orDash(missing.VersionID))
	res, err := c.Exports.RebuildMissing(ctx, missing, nil)
	if err != nil {
		return sheen.DownloadLink{}, err
	}
	a.notef("rebuilt by build %s\n", res.ID)
	return get()
}

// jsonLink is a link in JSON output: sheen.DownloadLink's own redacted
// form, and the signed URL only when --show-url asks for it.
type jsonLink struct {
	ID        string             `json:"id"`
	Link      sheen.DownloadLink `json:"link"`
	SignedURL string             `json:"signedUrl,omitempty"`
}

func (a *app) printLink(id string, link sheen.DownloadLink) {
	if a.json {
		doc := jsonLink{ID: id, Link: link}
		if a.showURL {
			doc.SignedURL = link.SignedURL()
		}
		a.writeJSON(doc)
		return
	}
	a.printf("Archive of %s: %s\n", id, orDash(link.Filename))
	if v := link.Version; v.ID != "" {
		a.printf("  version %s, made %s\n", v.ID, local(v.CreatedAt))
	}
	if link.Size > 0 {
		a.printf("  build output %s (the worker's size; the archive's differs)\n", bytesHuman(link.Size))
	}
	if !link.ExpiresAt.IsZero() {
		a.printf("  link valid until %s (%s from now)\n", local(link.ExpiresAt), human(time.Until(link.ExpiresAt)))
	}
	if a.showURL {
		a.printf("  url %s\n", link.SignedURL())
	} else {
		a.printf("  url %s\n  (the query is the link's credential: --show-url prints it)\n", redactedURL(link))
	}
}

// redactedURL is the link's URL with its query redacted, from the SDK's
// own redacted JSON form.
func redactedURL(link sheen.DownloadLink) string {
	var v struct {
		URL string `json:"url"`
	}
	b, err := json.Marshal(link)
	if err != nil || json.Unmarshal(b, &v) != nil {
		return "(redacted)"
	}
	return v.URL
}

// download fetches the archive behind link to out: a file ("" for the
// worker's name with the right extension) or "-" for stdout.
//
// A file that exists is never replaced unless force, nor moved away: the
// archive is downloaded to a temporary file (DownloadToFile: complete or
// nothing) and only then given its final name, without replacing
// anything there (placeNew). An explicit out that exists is refused before
// anything is downloaded.
func (a *app) download(ctx context.Context, c *sheen.WorkerClient, link sheen.DownloadLink, out string, force bool) error {
	if out == "-" {
		p := a.newDownloadProgress(link.Filename)
		start := time.Now()
		res, err := c.Exports.Download(ctx, link, a.stdout, &sheen.DownloadOptions{Progress: p.update})
		p.done(err == nil)
		if err != nil {
			return err
		}
		a.reportDownload("", res, time.Since(start), "")
		return nil
	}
	path, chosen := out, out == ""
	if chosen {
		path = safeName(link.Filename)
	} else if !force {
		if _, err := os.Lstat(path); err == nil {
			return &fileExistsError{path: path, before: true}
		}
	}
	tmp, err := reserveTemp(path)
	if err != nil {
		return err
	}
	placed := false
	defer func() {
		if !placed {
			os.Remove(tmp)
		}
	}()
	p := a.newDownloadProgress(filepath.Base(path))
	start := time.Now()
	res, err := c.Exports.DownloadToFile(ctx, link, tmp, &sheen.DownloadOptions{Progress: p.update})
	p.done(err == nil)
	if err != nil {
		return err
	}
	took := time.Since(start)
	note := ""
	if ext := res.Format.Ext(); ext != "" && !strings.HasSuffix(path, ext) {
		if chosen {
			path = strings.TrimSuffix(path, filepath.Ext(path)) + ext
		} else {
			note = "named " + filepath.Ext(path) + " but it is a " + string(res.Format) + " archive"
		}
	}
	if force {
		err = os.Rename(tmp, path)
	} else {
		err = placeNew(tmp, path)
	}
	if err != nil {
		return err
	}
	placed = true
	a.reportDownload(path, res, took, note)
	return nil
}

// fileExistsError refuses to replace a file that exists (exit code 11).
type fileExistsError struct {
	path   string
	before bool // refused before downloading (else the download was discarded)
}

func (e *fileExistsError) Error() string {
	if e.before {
		return e.path + " exists: not replaced, nothing downloaded\n  choose another --out, or pass --force to replace it"
	}
	return e.path + " exists: not replaced, the download was discarded\n  pass --out FILE to save it under another name, or --force to replace it"
}

func (e *fileExistsError) Is(target error) bool { return target == fs.ErrExist }

// reserveTemp creates an empty, hidden file of this run's own next to
// path, for the download to go to before it gets its final name.
func reserveTemp(path string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.download")
	if err != nil {
		// Name the file asked for, not the temporary one.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("cannot save %s: %w", path, err)
	}
	name := f.Name()
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// placeNew gives the complete file tmp the name path, unless a file has
// that name: then it fails with a *fileExistsError and tmp stays. A hard
// link claims the name atomically; on a file system without them, the name
// is claimed with O_EXCL and tmp moved onto that claim.
func placeNew(tmp, path string) error {
	err := os.Link(tmp, path)
	if err == nil {
		_ = os.Remove(tmp)
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return &fileExistsError{path: path}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return &fileExistsError{path: path}
	}
	if err != nil {
		return err
	}
	f.Close()
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(path) // the empty claim is this run's own
		return err
	}
	return nil
}

// safeName keeps the last element of the worker's file name, so a name
// with a path in it cannot write outside the current folder.
func safeName(name string) string {
	name = filepath.Base(filepath.Clean("/" + strings.ReplaceAll(name, "\\", "/")))
	if name == "/" || name == "." || name == "" {
		return "archive"
	}
	return name
}

type jsonDownload struct {
	Path          string             `json:"path,omitempty"`
	Bytes         int64              `json:"bytes"`
	Total         int64              `json:"total"`
	Format        string             `json:"format"`
	Seconds       float64            `json:"seconds"`
	Attempts      int                `json:"attempts"`
	Resumes       int                `json:"resumes"`
	Restarts      int                `json:"restarts"`
	LinkRefreshed bool               `json:"linkRefreshed"`
	Link          sheen.DownloadLink `json:"link,omitzero"`
}

func (a *app) reportDownload(path string, res *sheen.DownloadResult, took time.Duration, note string) {
	if a.json {
		a.writeJSON(jsonDownload{
			Path: path, Bytes: res.Written, Total: res.Total, Format: string(res.Format), Seconds: seconds(took),
			Attempts: res.Attempts, Resumes: res.Resumes, Restarts: res.Restarts, LinkRefreshed: res.LinkRefreshed, Link: res.Link,
		})
		return
	}
	w := a.stdout
	if path == "" {
		w = a.stderr // stdout is the archive
	}
	where := "Downloaded"
	if path != "" {
		where = "Saved " + path + ":"
	}
	rate := ""
	if s := took.Seconds(); s > 0 {
		rate = ", " + bytesHuman(int64(float64(res.Written)/s)) + "/s"
	}
	fprintf(w, "%s %s, a %s archive, in %s%s\n", where, bytesHuman(res.Written), res.Format, took.Round(time.Millisecond), rate)
	if res.Resumes > 0 {
		fprintf(w, "  resumed %d time(s) where the connection broke\n", res.Resumes)
	}
	if res.Restarts > 0 {
		fprintf(w, "  started over %d time(s): the object store ignored Range\n", res.Restarts)
	}
	if res.LinkRefreshed {
		fprintf(w, "  the link was refused (expired): a fresh one was fetched\n")
	}
	if note != "" {
		fprintf(w, "  note: %s\n", note)
	}
}
