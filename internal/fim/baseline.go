package fim

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// The baseline file of one tree, written once per scan and never modified in place:
//
//	"SAGEFIM1" header-length(uvarint) header
//	record* where record = length(uvarint, > 0) payload
//	0(uvarint) count(uvarint) crc32c(4 bytes little-endian, of everything before it)
//
// header = root-length root full-hash-time(varint, unix ns). Records are in walk order
// (comparePaths), strictly increasing, so that a scan merges the walk with the previous baseline in
// one pass with bounded memory, like comm(1). The file is written under a temporary name, fsynced and
// renamed over the previous one, so that a kill at any moment leaves either the old or the new one.
const (
	baselineMagic  = "SAGEFIM1"
	maxRecordLen   = 1 << 17
	maxPathLen     = 1 << 16
	maxHeaderLen   = 1 << 17
	indexEvery     = 128
	hashFlag       = 1
	writeBufSize   = 256 << 10
	readBufSize    = 256 << 10
	baselineSuffix = ".baseline"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt marks a baseline file that does not decode.
var ErrCorrupt = errors.New("corrupt baseline")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// header is the baseline's metadata.
type header struct {
	Root         string
	FullHashTime int64 // when every regular file was last hashed regardless of stat (paranoid)
}

type indexPoint struct {
	path   string
	offset int64
}

func appendEntry(b []byte, e *Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(e.Path)))
	b = append(b, e.Path...)
	var flags byte
	if e.HasHash {
		flags |= hashFlag
	}
	b = append(b, byte(e.Type), flags)
	b = binary.AppendUvarint(b, uint64(e.Size))
	b = binary.AppendUvarint(b, uint64(e.Mode))
	b = binary.AppendUvarint(b, uint64(e.UID))
	b = binary.AppendUvarint(b, uint64(e.GID))
	b = binary.AppendVarint(b, e.Mtime)
	b = binary.AppendVarint(b, e.Ctime)
	b = binary.AppendUvarint(b, e.Inode)
	b = binary.AppendUvarint(b, uint64(len(e.Link)))
	b = append(b, e.Link...)
	if e.HasHash {
		b = append(b, e.SHA256[:]...)
	}
	return b
}

// decoder reads fields from one record's payload.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = corrupt("bad %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = corrupt("bad %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = corrupt("%s runs past the record", what)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32(what string) uint32 {
	v := d.uvarint(what)
	if v > 1<<32-1 && d.err == nil {
		d.err = corrupt("%s out of range", what)
	}
	return uint32(v)
}

func validPath(p string) bool {
	if p == "" {
		return true
	}
	if len(p) > maxPathLen || strings.IndexByte(p, 0) >= 0 {
		return false
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}

func decodeEntry(b []byte) (Entry, error) {
	d := decoder{b: b}
	var e Entry
	pl := d.uvarint("path length")
	if pl > maxPathLen && d.err == nil {
		return e, corrupt("path of %d bytes", pl)
	}
	e.Path = string(d.bytes(pl, "path"))
	tf := d.bytes(2, "type")
	if d.err == nil {
		e.Type = Type(tf[0])
		switch e.Type {
		case TypeFile, TypeDir, TypeSymlink, TypeOther:
		default:
			return e, corrupt("unknown type %q", tf[0])
		}
		if tf[1]&^hashFlag != 0 {
			return e, corrupt("unknown flags %#x", tf[1])
		}
		e.HasHash = tf[1]&hashFlag != 0
	}
	size := d.uvarint("size")
	if size > 1<<63-1 && d.err == nil {
		return e, corrupt("size out of range")
	}
	e.Size = int64(size)
	e.Mode = d.u32("mode")
	e.UID = d.u32("uid")
	e.GID = d.u32("gid")
	e.Mtime = d.varint("mtime")
	e.Ctime = d.varint("ctime")
	e.Inode = d.uvarint("inode")
	ll := d.uvarint("link length")
	e.Link = string(d.bytes(ll, "link target"))
	if e.HasHash {
		copy(e.SHA256[:], d.bytes(32, "sha256"))
	}
	if d.err != nil {
		return e, d.err
	}
	if len(d.b) != 0 {
		return e, corrupt("%d trailing bytes in a record", len(d.b))
	}
	if !validPath(e.Path) {
		return e, corrupt("invalid path %q", e.Path)
	}
	if e.HasHash && e.Type != TypeFile {
		return e, corrupt("%q: a hash on a %s", e.Path, e.Type)
	}
	return e, nil
}

// baselineReader streams a baseline file's entries in order, checking order, count and checksum.
type baselineReader struct {
	hdr    header
	r      *bufio.Reader
	closer io.Closer
	crc    uint32
	offset int64 // of the next record
	count  uint64
	prev   string
	first  bool
	done   bool
	// partial: reading from an index point, not from the start, so the trailer's count and checksum
	// cannot be checked.
	partial bool
	buf     []byte
}

func (r *baselineReader) readByte() (byte, error) {
	c, err := r.r.ReadByte()
	if err != nil {
		return 0, err
	}
	r.crc = crc32.Update(r.crc, castagnoli, []byte{c})
	r.offset++
	return c, nil
}

func (r *baselineReader) uvarint() (uint64, error) {
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := r.readByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, corrupt("varint overflows")
			}
			return x | uint64(c)<<s, nil
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, corrupt("varint overflows")
}

func (r *baselineReader) readFull(n uint64) ([]byte, error) {
	if uint64(cap(r.buf)) < n {
		r.buf = make([]byte, n)
	}
	b := r.buf[:n]
	if _, err := io.ReadFull(r.r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	r.crc = crc32.Update(r.crc, castagnoli, b)
	r.offset += int64(n)
	return b, nil
}

func newBaselineReader(rd io.Reader) (*baselineReader, error) {
	r := &baselineReader{r: bufio.NewReaderSize(rd, readBufSize), first: true}
	magic, err := r.readFull(uint64(len(baselineMagic)))
	if err != nil {
		return nil, corrupt("reading the magic: %v", err)
	}
	if string(magic) != baselineMagic {
		return nil, corrupt("not a baseline file (magic %q)", magic)
	}
	hl, err := r.uvarint()
	if err != nil {
		return nil, corrupt("header length: %v", err)
	}
	if hl > maxHeaderLen {
		return nil, corrupt("header of %d bytes", hl)
	}
	hb, err := r.readFull(hl)
	if err != nil {
		return nil, corrupt("header: %v", err)
	}
	d := decoder{b: hb}
	rl := d.uvarint("root length")
	r.hdr.Root = string(d.bytes(rl, "root"))
	r.hdr.FullHashTime = d.varint("full hash time")
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, corrupt("%d trailing bytes in the header", len(d.b))
	}
	return r, nil
}

// next returns the next entry, or ok=false once the trailer has been read and verified.
func (r *baselineReader) next() (e Entry, ok bool, err error) {
	if r.done {
		return e, false, nil
	}
	start := r.offset
	n, err := r.uvarint()
	if err != nil {
		return e, false, corrupt("record length at offset %d: %v", start, err)
	}
	if n == 0 {
		if r.partial {
			r.done = true
			return e, false, nil
		}
		return e, false, r.trailer()
	}
	if n > maxRecordLen {
		return e, false, corrupt("record of %d bytes at offset %d", n, start)
	}
	b, err := r.readFull(n)
	if err != nil {
		return e, false, corrupt("record at offset %d: %v", start, err)
	}
	e, err = decodeEntry(b)
	if err != nil {
		return e, false, err
	}
	if !r.first && comparePaths(r.prev, e.Path) >= 0 {
		return e, false, corrupt("%q after %q: out of order", e.Path, r.prev)
	}
	r.first = false
	r.prev = e.Path
	r.count++
	return e, true, nil
}

func (r *baselineReader) trailer() error {
	r.done = true
	count, err := r.uvarint()
	if err != nil {
		return corrupt("trailer: %v", err)
	}
	want := r.crc
	var sum [4]byte
	if _, err := io.ReadFull(r.r, sum[:]); err != nil {
		return corrupt("checksum: %v", err)
	}
	if count != r.count {
		return corrupt("trailer says %d records, read %d", count, r.count)
	}
	if got := binary.LittleEndian.Uint32(sum[:]); got != want {
		return corrupt("checksum %08x, computed %08x", got, want)
	}
	if _, err := r.r.ReadByte(); err != io.EOF {
		return corrupt("data after the trailer")
	}
	return nil
}

func (r *baselineReader) close() error {
	if r.closer != nil {
		return r.closer.Close()
	}
	return nil
}

func openBaseline(path string) (*baselineReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := newBaselineReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.closer = f
	return r, nil
}

// verifyBaseline reads a whole baseline file, checking it, and returns its header, entry count and
// a sparse index (one path and offset every indexEvery records) for single-path lookups.
func verifyBaseline(path string) (header, uint64, []indexPoint, error) {
	r, err := openBaseline(path)
	if err != nil {
		return header{}, 0, nil, err
	}
	defer r.close()
	var idx []indexPoint
	for {
		off := r.offset
		e, ok, err := r.next()
		if err != nil {
			return header{}, 0, nil, fmt.Errorf("%s: %w", path, err)
		}
		if !ok {
			return r.hdr, r.count, idx, nil
		}
		if (r.count-1)%indexEvery == 0 {
			idx = append(idx, indexPoint{path: e.Path, offset: off})
		}
	}
}

// lookupBaseline finds one path through the sparse index: at most indexEvery records are read.
func lookupBaseline(path string, idx []indexPoint, rel string) (Entry, bool, error) {
	// The last index point at or before rel.
	lo, hi := 0, len(idx)
	for lo < hi {
		m := (lo + hi) / 2
		if comparePaths(idx[m].path, rel) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return Entry{}, false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return Entry{}, false, err
	}
	defer f.Close()
	if _, err := f.Seek(idx[lo-1].offset, io.SeekStart); err != nil {
		return Entry{}, false, err
	}
	r := &baselineReader{r: bufio.NewReaderSize(f, 16<<10), first: true, partial: true}
	for i := 0; i < indexEvery; i++ {
		e, ok, err := r.next()
		if err != nil || !ok {
			return Entry{}, false, err
		}
		switch c := comparePaths(e.Path, rel); {
		case c == 0:
			return e, true, nil
		case c > 0:
			return Entry{}, false, nil
		}
	}
	return Entry{}, false, nil
}

// baselineWriter writes a new baseline under a temporary name; commit makes it the baseline.
type baselineWriter struct {
	path, tmp string
	f         *os.File
	w         *bufio.Writer
	crc       uint32
	offset    int64
	count     uint64
	prev      string
	idx       []indexPoint
	buf       []byte
}

func createBaseline(path string, hdr header) (*baselineWriter, error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("creating the new baseline: %w", err)
	}
	w, err := newBaselineWriter(f, hdr)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	w.path, w.tmp, w.f = path, f.Name(), f
	return w, nil
}

// newBaselineWriter writes the encoding to out; createBaseline adds the file's atomic replacement.
func newBaselineWriter(out io.Writer, hdr header) (*baselineWriter, error) {
	w := &baselineWriter{w: bufio.NewWriterSize(out, writeBufSize)}
	h := binary.AppendUvarint(nil, uint64(len(hdr.Root)))
	h = append(h, hdr.Root...)
	h = binary.AppendVarint(h, hdr.FullHashTime)
	b := append([]byte(baselineMagic), binary.AppendUvarint(nil, uint64(len(h)))...)
	if err := w.write(append(b, h...)); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *baselineWriter) write(b []byte) error {
	w.crc = crc32.Update(w.crc, castagnoli, b)
	w.offset += int64(len(b))
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("writing %s: %w", w.tmp, err)
	}
	return nil
}

func (w *baselineWriter) add(e *Entry) error {
	if w.count > 0 && comparePaths(w.prev, e.Path) >= 0 {
		return fmt.Errorf("baseline: %q after %q: out of order (a bug)", e.Path, w.prev)
	}
	if w.count%indexEvery == 0 {
		w.idx = append(w.idx, indexPoint{path: e.Path, offset: w.offset})
	}
	w.buf = appendEntry(w.buf[:0], e)
	if len(w.buf) > maxRecordLen {
		return fmt.Errorf("baseline: %q: record of %d bytes is too long", e.Path, len(w.buf))
	}
	rec := binary.AppendUvarint(nil, uint64(len(w.buf)))
	if err := w.write(rec); err != nil {
		return err
	}
	if err := w.write(w.buf); err != nil {
		return err
	}
	w.prev = e.Path
	w.count++
	return nil
}

// finish writes the trailer and flushes.
func (w *baselineWriter) finish() error {
	t := binary.AppendUvarint([]byte{0}, w.count)
	if err := w.write(t); err != nil {
		return err
	}
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], w.crc)
	if _, err := w.w.Write(sum[:]); err != nil {
		return fmt.Errorf("writing %s: %w", w.tmp, err)
	}
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", w.tmp, err)
	}
	return nil
}

// commit finishes the file, syncs it, and renames it over the previous baseline.
func (w *baselineWriter) commit() error {
	if err := w.finish(); err != nil {
		w.abort()
		return err
	}
	if err := w.f.Sync(); err != nil {
		w.abort()
		return fmt.Errorf("syncing %s: %w", w.tmp, err)
	}
	if err := w.f.Close(); err != nil {
		os.Remove(w.tmp)
		return fmt.Errorf("closing %s: %w", w.tmp, err)
	}
	if err := os.Rename(w.tmp, w.path); err != nil {
		os.Remove(w.tmp)
		return fmt.Errorf("installing the new baseline: %w", err)
	}
	// The rename is durable only once the directory is synced.
	if d, err := os.Open(filepath.Dir(w.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func (w *baselineWriter) abort() {
	w.f.Close()
	os.Remove(w.tmp)
}

// removeStaleTemps deletes temporary files a killed scan left behind.
func removeStaleTemps(path string) {
	matches, _ := filepath.Glob(path + ".tmp-*")
	for _, m := range matches {
		os.Remove(m)
	}
}
