// Command download measures ExportsService.Download against a raw io.Copy of
// the same response, in one run:
//
//   - throughput of Download for a 256 MiB archive over loopback, as a ratio
//     of a bare http.Get + io.Copy(io.Discard, resp.Body) of the same URL
//     with the same transport (goal: >= 0.90); and, since io.Copy into
//     io.Discard reads 8 KiB at a time, also as a ratio of an io.CopyBuffer
//     with Download's own 64 KiB buffer size;
//   - the peak heap in use while Download runs, above the heap before it
//     (goal: flat, under 16 MiB), sampled every millisecond from
//     runtime/metrics (heap objects, live and not yet collected).
//
// Rounds alternate raw and Download; medians are reported.
//
// Run it with: go run ./bench/download
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sheen "github.com/sheenapps/sheen-go"
)

const secret = "bench-secret-0123456789abcdef0123456789"

func main() {
	sizeMiB := flag.Int("mib", 256, "archive size in MiB")
	rounds := flag.Int("rounds", 3, "rounds of each measurement (medians are reported)")
	flag.Parse()
	log.SetFlags(0)
	size := int64(*sizeMiB) << 20

	// The archive is one 1 MiB block repeated, so the server holds 1 MiB,
	// not the whole archive, and the heap measures the client.
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(i*7 + i>>8)
	}
	copy(block, []byte{0x1f, 0x8b, 8, 0}) // looks like gzip
	mux := http.NewServeMux()
	mux.HandleFunc("/archive.tar.gz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		for left := size; left > 0; left -= int64(len(block)) {
			if _, err := w.Write(block[:min(left, int64(len(block)))]); err != nil {
				return
			}
		}
	})
	var srvURL string
	mux.HandleFunc("/v1/projects/p1/export", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"success":true,"downloadUrl":%q,"expiresAt":%q,"filename":"p1-latest.zip","size":%d}`,
			srvURL+"/archive.tar.gz?X-Amz-Signature=bench", time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339), size)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	srvURL = srv.URL

	client, err := sheen.NewWorkerClient(sheen.WithBaseURL(srv.URL), sheen.WithSecret(secret))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	link, err := client.Exports.ProjectLink(ctx, "p1", "u1")
	if err != nil {
		log.Fatal(err)
	}
	raw := &http.Client{} // http.DefaultTransport, as Download's default client

	get := func(copyBody func(io.Reader) (int64, error)) func() (int64, error) {
		return func() (int64, error) {
			resp, err := raw.Get(link.SignedURL())
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			return copyBody(resp.Body)
		}
	}
	buf := make([]byte, 64<<10)
	var rawTimes, bufTimes, dlTimes []time.Duration
	var peak uint64
	for range *rounds {
		d, err := timeIt(get(func(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }), size)
		if err != nil {
			log.Fatal(err)
		}
		rawTimes = append(rawTimes, d)

		d, err = timeIt(get(func(r io.Reader) (int64, error) { return io.CopyBuffer(writerOnly{io.Discard}, r, buf) }), size)
		if err != nil {
			log.Fatal(err)
		}
		bufTimes = append(bufTimes, d)

		d, err = timeIt(func() (int64, error) { return written(client.Exports.Download(ctx, link, io.Discard, nil)) }, size)
		if err != nil {
			log.Fatal(err)
		}
		dlTimes = append(dlTimes, d)
	}
	// The heap is sampled in a run of its own, so the sampler does not slow
	// the timed runs.
	_, err = timeIt(func() (int64, error) {
		stop := sampleHeap(&peak)
		defer stop()
		return written(client.Exports.Download(ctx, link, io.Discard, nil))
	}, size)
	if err != nil {
		log.Fatal(err)
	}
	rawMed, bufMed, dlMed := median(rawTimes), median(bufTimes), median(dlTimes)
	mbps := func(d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }
	fmt.Printf("archive: %d MiB over loopback, %d rounds (medians)\n", *sizeMiB, *rounds)
	fmt.Printf("raw io.Copy:        %7.0f MiB/s  (%v)\n", mbps(rawMed), rawMed.Round(time.Millisecond))
	fmt.Printf("raw 64 KiB buffer:  %7.0f MiB/s  (%v)\n", mbps(bufMed), bufMed.Round(time.Millisecond))
	fmt.Printf("Exports.Download:   %7.0f MiB/s  (%v)\n", mbps(dlMed), dlMed.Round(time.Millisecond))
	fmt.Printf("throughput ratio vs io.Copy:           %6.3f  (goal >= 0.90)\n", rawMed.Seconds()/dlMed.Seconds())
	fmt.Printf("throughput ratio vs 64 KiB CopyBuffer: %6.3f\n", bufMed.Seconds()/dlMed.Seconds())
	fmt.Printf("peak heap above baseline during Download: %.2f MiB  (goal < 16 MiB)\n", float64(peak)/(1<<20))
}

// writerOnly hides io.Discard's ReadFrom, so CopyBuffer uses the buffer.
type writerOnly struct{ io.Writer }

// timeIt runs f once and checks it moved want bytes.
// written is how many bytes a download wrote.
func written(res *sheen.DownloadResult, err error) (int64, error) {
	if res == nil {
		return 0, err
	}
	return res.Written, err
}

func timeIt(f func() (int64, error), want int64) (time.Duration, error) {
	runtime.GC()
	start := time.Now()
	n, err := f()
	d := time.Since(start)
	if err == nil && n != want {
		err = fmt.Errorf("moved %d bytes, want %d", n, want)
	}
	return d, err
}

// sampleHeap records, until stop is called, the largest heap-in-use reading
// above the one at the start.
func sampleHeap(above *uint64) (stop func()) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(s); return s[0].Value.Uint64() }
	runtime.GC()
	base := read()
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for !done.Load() {
			if v := read(); v > base && v-base > *above {
				*above = v - base
			}
			<-t.C
		}
	}()
	return func() { done.Store(true); wg.Wait() }
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
