package changes

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// writeTree writes files (path -> content) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, s := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// dpkgFixtureRoot is a root with three packages: tool (amd64, a binary under merged /usr and a
// conffile), libfoo (Multi-Arch: same, info files named with the architecture) and gone (removed,
// config-files only), plus a diversion of tool's /usr/bin/tool by libfoo.
func dpkgFixtureRoot(t *testing.T) string {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"var/lib/dpkg/status": `Package: tool
Status: install ok installed
Architecture: amd64
Version: 1.0-1
Conffiles:
 /etc/tool.conf ` + md5hex("conf v1\n") + `
 /etc/tool-old.conf 00000000000000000000000000000000 obsolete
Description: a tool
 with a long description

Package: libfoo
Status: install ok installed
Multi-Arch: same
Architecture: amd64
Version: 2.0

Package: gone
Status: deinstall ok config-files
Architecture: all
Version: 0.1
`,
		"var/lib/dpkg/info/tool.list":            "/.\n/bin\n/bin/tool\n/usr/share/tool\n/usr/share/tool/data\n/etc/tool.conf\n",
		"var/lib/dpkg/info/tool.md5sums":         md5hex("tool binary\n") + "  bin/tool\n" + md5hex("data\n") + "  usr/share/tool/data\n",
		"var/lib/dpkg/info/libfoo:amd64.list":    "/.\n/usr/share/tool\n/usr/lib/libfoo.so\n/usr/bin/tool.foo\n",
		"var/lib/dpkg/info/libfoo:amd64.md5sums": md5hex("libfoo\n") + "  usr/lib/libfoo.so\n",
		"var/lib/dpkg/info/gone.list":            "/usr/share/gone/file\n",
		"var/lib/dpkg/diversions":                "/usr/share/tool/data\n/usr/share/tool/data.distrib\nlibfoo\n",
		"usr/bin/tool":                           "tool binary\n",
		"usr/share/tool/data.distrib":            "data\n",
		"etc/tool.conf":                          "conf v1\n",
	})
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestPackageIndexDpkg(t *testing.T) {
	root := dpkgFixtureRoot(t)
	x := NewPackageIndex(Config{RootPath: root}, nil)
	if _, err := x.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	sum := func(s string) (out [16]byte) { return md5.Sum([]byte(s)) }
	tests := []struct {
		path    string
		owned   bool
		pkg     string
		digest  string
		sum     [16]byte
		conf    bool
		shared  bool
		version string
	}{
		{path: "/usr/bin/tool", owned: true, pkg: "tool:amd64", digest: "md5", sum: sum("tool binary\n"), version: "1.0-1"}, // listed as /bin/tool
		{path: "/bin/tool", owned: false},
		{path: "/etc/tool.conf", owned: true, pkg: "tool:amd64", digest: "md5", sum: sum("conf v1\n"), conf: true},
		{path: "/etc/tool-old.conf", owned: false}, // obsolete conffile
		{path: "/usr/share/tool", owned: true, pkg: "tool:amd64", shared: true},
		{path: "/usr/share/tool/data.distrib", owned: true, pkg: "tool:amd64", digest: "md5", sum: sum("data\n")}, // diverted
		{path: "/usr/share/tool/data", owned: false},
		{path: "/usr/lib/libfoo.so", owned: true, pkg: "libfoo:amd64", digest: "md5", sum: sum("libfoo\n"), version: "2.0"},
		{path: "/usr/bin/tool.foo", owned: true, pkg: "libfoo:amd64"},
		{path: "/usr/share/gone/file", owned: false}, // config-files: not installed
		{path: "/usr/bin/other", owned: false},
	}
	for _, tc := range tests {
		o, ok := x.Lookup(tc.path)
		if ok != tc.owned {
			t.Errorf("%s: owned %v, want %v (%+v)", tc.path, ok, tc.owned, o)
			continue
		}
		if !ok {
			continue
		}
		if o.Package != tc.pkg || o.Digest != tc.digest || o.Conffile != tc.conf || o.Shared != tc.shared || (tc.digest != "" && o.Sum != tc.sum) {
			t.Errorf("%s: got %+v", tc.path, o)
		}
		if tc.version != "" && o.Version != tc.version {
			t.Errorf("%s: version %q", tc.path, o.Version)
		}
	}
	if o, _ := x.Lookup("/usr/bin/tool"); !o.Matches(bytes.Clone(func() []byte { s := md5.Sum([]byte("tool binary\n")); return s[:] }())) {
		t.Error("Matches: the recorded checksum does not match itself")
	}

	// An upgrade drops data and adds data2: data.distrib is still attributed, as gone.
	writeTree(t, root, map[string]string{
		"var/lib/dpkg/info/tool.list":    "/.\n/bin\n/bin/tool\n/usr/share/tool\n/usr/share/tool/data2\n/etc/tool.conf\n",
		"var/lib/dpkg/info/tool.md5sums": md5hex("tool binary 2\n") + "  bin/tool\n",
	})
	// The directory's mtime may not move within the clock's resolution: the status file's
	// replacement (a new inode, as dpkg does) is what changes the stamp here.
	status, _ := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	os.Remove(filepath.Join(root, "var/lib/dpkg/status"))
	writeTree(t, root, map[string]string{"var/lib/dpkg/status": strings.Replace(string(status), "1.0-1", "2.0-1", 1)})
	if changed, err := x.Refresh(t.Context()); err != nil || !changed {
		t.Fatalf("refresh after upgrade: changed %v, %v", changed, err)
	}
	if o, ok := x.Lookup("/usr/share/tool/data.distrib"); !ok || !o.Gone || o.Package != "tool:amd64" {
		t.Errorf("dropped file: %+v %v", o, ok)
	}
	if o, ok := x.Lookup("/usr/share/tool/data2"); !ok || o.Gone || o.Version != "2.0-1" {
		t.Errorf("new file: %+v %v", o, ok)
	}
	if changed, _ := x.Refresh(t.Context()); changed {
		t.Error("refresh without a database change rebuilt the index")
	}
}

func TestPackageIndexPrefixes(t *testing.T) {
	root := dpkgFixtureRoot(t)
	x := NewPackageIndex(Config{RootPath: root}, []string{"/usr/bin"})
	if _, ok := x.Lookup("/usr/bin/tool"); !ok {
		t.Error("/usr/bin/tool not indexed")
	}
	if _, ok := x.Lookup("/usr/lib/libfoo.so"); ok {
		t.Error("/usr/lib/libfoo.so indexed outside the prefixes")
	}
	if n := x.Len(); n != 3 { // /usr/bin (listed as /bin), /usr/bin/tool and /usr/bin/tool.foo
		t.Errorf("Len %d", n)
	}
}

// TestPackageIndexHost builds the index of this host's packages: on a Debian machine it must
// find the owner of /usr/bin/dpkg, through the merged-/usr alias if there is one.
func TestPackageIndexHost(t *testing.T) {
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		t.Skip("not a dpkg host")
	}
	x := NewPackageIndex(Config{}, nil)
	if _, err := x.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	o, ok := x.Lookup("/usr/bin/dpkg")
	if !ok || !strings.HasPrefix(o.Package, "dpkg:") || o.Digest != "md5" {
		t.Fatalf("/usr/bin/dpkg: %+v %v", o, ok)
	}
	sum, err := fileDigest("/usr/bin/dpkg", "md5")
	if err != nil || !o.Matches(sum) {
		t.Errorf("/usr/bin/dpkg does not match its recorded md5 (%v)", err)
	}
	t.Logf("%d owned paths indexed", x.Len())
}

func TestParseMD5SumsLine(t *testing.T) {
	h := md5hex("x")
	tests := []struct {
		line, path string
		ok         bool
	}{
		{h + "  usr/bin/x", "/usr/bin/x", true},
		{h + "  usr/share/a file with spaces", "/usr/share/a file with spaces", true},
		{h + " *usr/bin/x", "/usr/bin/x", true},
		{h + "  ", "", false},
		{"zz" + h[2:] + "  usr/bin/x", "", false},
		{"short", "", false},
	}
	for _, tc := range tests {
		p, _, ok := ParseMD5SumsLine([]byte(tc.line))
		if ok != tc.ok || p != tc.path {
			t.Errorf("%q: %q %v", tc.line, p, ok)
		}
	}
}

const rpmFilesFixture = "bash\tx86_64\t5.1.8-6.el9\t8\t0\t" + "9b1c5b2f3e7b8f0e4f3a0a5c3d2e1f00112233445566778899aabbccddeeff00\t/usr/bin/bash\n" +
	"bash\tx86_64\t5.1.8-6.el9\t8\t1\t" + "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\t/etc/skel/.bashrc\n" +
	"bash\tx86_64\t5.1.8-6.el9\t8\t0\t\t/usr/share/doc/bash\n" +
	"gpg-pubkey\t(none)\t1-2\t(none)\t0\t\t(contains no files)\n" +
	"old\tnoarch\t1-1\t1\t0\t0123456789abcdef0123456789abcdef\t/usr/share/old/file\n"

func TestParseRPMFiles(t *testing.T) {
	var got []RPMFile
	if err := ParseRPMFiles(strings.NewReader(rpmFilesFixture), func(f RPMFile) { got = append(got, f) }); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		key, path, digest string
		config            bool
	}{
		{"bash:x86_64", "/usr/bin/bash", "sha256", false},
		{"bash:x86_64", "/etc/skel/.bashrc", "sha256", true},
		{"bash:x86_64", "/usr/share/doc/bash", "", false},
		{"old:noarch", "/usr/share/old/file", "md5", false},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i, w := range want {
		g := got[i]
		if g.Key != w.key || g.Path != w.path || g.Digest != w.digest || g.Config != w.config {
			t.Errorf("%d: got %+v, want %+v", i, g, w)
		}
	}
}

func FuzzMD5SumsLine(f *testing.F) {
	f.Add([]byte(md5hex("x") + "  usr/bin/x"))
	f.Add([]byte("0123456789abcdef0123456789abcdef *"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, _, ok := ParseMD5SumsLine(b); ok && !strings.HasPrefix(p, "/") {
			t.Fatalf("path %q not absolute", p)
		}
	})
}

func FuzzDpkgStatusFiles(f *testing.F) {
	f.Add([]byte("Package: x\nStatus: install ok installed\nConffiles:\n /etc/x 0123 obsolete\n /etc/y\n"))
	f.Add([]byte(dpkgFixture))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseDpkgStatusFiles(b, func(p DpkgPackage) {
			if p.Name == "" {
				t.Fatal("stanza without a name")
			}
		})
	})
}

func FuzzDpkgDiversions(f *testing.F) {
	f.Add([]byte("/a\n/a.distrib\npkg\n/b\n/b.x\n:\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _ = ParseDpkgDiversions(b) })
}

func FuzzRPMFiles(f *testing.F) {
	f.Add([]byte(rpmFilesFixture))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = ParseRPMFiles(bytes.NewReader(b), func(r RPMFile) {
			if !strings.HasPrefix(r.Path, "/") || (r.Digest != "" && len(r.Sum) < 16) {
				t.Fatalf("bad file %+v", r)
			}
		})
	})
}
