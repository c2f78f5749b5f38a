package fim

import (
	"bytes"
	"testing"
)

func encodeForTest(t testing.TB, hdr header, entries []Entry) []byte {
	var buf bytes.Buffer
	w, err := newBaselineWriter(&buf, hdr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		if err := w.add(&entries[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sampleEntries() []Entry {
	return []Entry{
		{Path: "", Type: TypeDir, Mode: 0o40755, Mtime: 1, Ctime: 2, Inode: 3},
		{Path: "a", Type: TypeFile, Size: 5, Mode: 0o100644, UID: 1000, GID: 1000, Mtime: -5, Ctime: 7, Inode: 9, HasHash: true, SHA256: [32]byte{1, 2, 3}},
		{Path: "a/b", Type: TypeSymlink, Mode: 0o120777, Link: "../x"},
		{Path: "a.txt", Type: TypeOther, Mode: 0o10600},
	}
}

func TestBaselineRoundTrip(t *testing.T) {
	in := sampleEntries()
	b := encodeForTest(t, header{Root: "/etc", FullHashTime: 42}, in)
	r, err := newBaselineReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if r.hdr.Root != "/etc" || r.hdr.FullHashTime != 42 {
		t.Fatalf("header %+v", r.hdr)
	}
	for i := 0; ; i++ {
		e, ok, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if i != len(in) {
				t.Fatalf("read %d entries, want %d", i, len(in))
			}
			break
		}
		if e != in[i] {
			t.Fatalf("entry %d: %+v, want %+v", i, e, in[i])
		}
	}
	// Every truncation and every single-bit flip is refused, never accepted as a shorter baseline.
	for n := 0; n < len(b); n++ {
		if decodeAll(b[:n]) == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x10
		if decodeAll(c) == nil {
			t.Fatalf("bit flip at %d: accepted", i)
		}
	}
}

func decodeAll(b []byte) error {
	r, err := newBaselineReader(bytes.NewReader(b))
	if err != nil {
		return err
	}
	for {
		_, ok, err := r.next()
		if err != nil || !ok {
			return err
		}
	}
}

func FuzzBaselineDecode(f *testing.F) {
	f.Add(encodeForTest(f, header{Root: "/etc"}, sampleEntries()))
	f.Add(encodeForTest(f, header{}, nil))
	f.Add([]byte(baselineMagic))
	f.Add([]byte("SAGEFIM1\x01\x00\x05\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := newBaselineReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		var entries []Entry
		for {
			e, ok, err := r.next()
			if err != nil {
				return
			}
			if !ok {
				break
			}
			entries = append(entries, e)
		}
		// Whatever decodes re-encodes to the same bytes: there is one encoding of a baseline.
		if got := encodeForTest(t, r.hdr, entries); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", got, b)
		}
	})
}
