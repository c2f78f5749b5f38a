package collector

import (
	"context"
	"sync"
	"sync/atomic"
)

// scrapeKey marks a scrape's context with the scrape's number, so that collectors reading the same
// file in one scrape read it once: /proc/stat is read by cpu, stat, reboot and process_groups, and
// the kernel sums every interrupt counter of every CPU to produce it, which makes it the most
// expensive read of a scrape (about 80 µs on a 2-CPU VM).
type scrapeKey struct{}

var scrapeNumbers atomic.Uint64

func withScrapeNumber(ctx context.Context) context.Context {
	return context.WithValue(ctx, scrapeKey{}, scrapeNumbers.Add(1))
}

// sharedFile is a file's content as read in one scrape.
type sharedFile struct {
	mu     sync.Mutex
	scrape uint64 // 0: not of a scrape (a collector run alone, as tests do), never reused
	data   []byte
	err    error
}

var sharedFiles sync.Map // path -> *sharedFile; a handful of paths (one per procfs mount point)

// readShared calls use with the content of the file at path as read in the scrape of ctx: the first
// collector of a scrape to ask reads it, the others reuse what it read. use runs under a lock and
// must not keep data. The error is the read's.
func readShared(ctx context.Context, path string, use func(data []byte)) error {
	v, ok := sharedFiles.Load(path)
	if !ok {
		v, _ = sharedFiles.LoadOrStore(path, &sharedFile{})
	}
	sf := v.(*sharedFile)
	n, _ := ctx.Value(scrapeKey{}).(uint64)
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if n == 0 || n != sf.scrape {
		sf.data, sf.err = readInto(path, sf.data)
		sf.scrape = n
	}
	if sf.err != nil {
		return sf.err
	}
	use(sf.data)
	return nil
}
