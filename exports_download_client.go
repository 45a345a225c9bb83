package sheen

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// newDownloadClient returns a copy of hc for downloads: it follows
// redirects only as checkDownloadScheme allows, and sends no Referer when
// it does (net/http would otherwise send the previous URL, signed query and
// all, to the host redirected to). hc's own CheckRedirect, if any, runs
// after those checks.
func newDownloadClient(hc *http.Client, insecureHTTP bool) *http.Client {
	c := *hc
	next := hc.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := checkDownloadScheme(via[len(via)-1].URL, req.URL, insecureHTTP); err != nil {
			return err
		}
		req.Header.Del("Referer")
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &c
}

// checkDownloadScheme refuses to fetch to over plain http (coming from
// from, nil for the link itself) unless insecureHTTP is set: https is
// always fine; http only on a loopback host and never after https.
func checkDownloadScheme(from, to *url.URL, insecureHTTP bool) error {
	if to.Scheme != "http" || insecureHTTP {
		return nil
	}
	switch {
	case from != nil && from.Scheme == "https":
		return fmt.Errorf("%w: the object store redirected from https to http://%s (WithInsecureHTTP allows it)", ErrInsecureDownload, to.Host)
	case !isLoopback(to.Hostname()):
		return fmt.Errorf("%w: http://%s is not loopback; use https (or WithInsecureHTTP inside a trusted network)", ErrInsecureDownload, to.Host)
	}
	return nil
}

// insecureDownloads reports whether downloads may use plain http:// on any
// host. The client opted in with WithInsecureHTTP when its worker is plain
// http:// on a host that is not loopback (validate refuses that otherwise);
// cfg.insecureHTTP carries the option when the worker is https.
func insecureDownloads(c *core, cfg exportsConfig) bool {
	return cfg.insecureHTTP || (c.baseURL.Scheme == "http" && !isLoopback(c.baseURL.Hostname()))
}
