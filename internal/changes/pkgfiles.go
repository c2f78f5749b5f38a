package changes

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// PackageIndex answers, for an absolute path, which installed package owns it and the checksum the
// package database recorded for it: dpkg's info/<pkg>[:arch].list and .md5sums plus the status
// file's Conffiles, or rpm's file digests. It is what lets the Grouper tell an upgrade's hundreds of
// file changes (one package event) from a packaged binary edited behind dpkg's back (tampering).
//
// It is built lazily and rebuilt only when the package database changes (mtime, size or inode of
// dpkg's status file and info directory, or of rpm's database directory), because a rebuild reads
// every list file (about 100k paths on a Debian desktop, half a second). Memory is one map entry per
// owned path, 32 bytes and no string: a 64-bit hash of the path (a false match among 100k paths
// has odds of about 1 in 10^9), a package number and the first 16 bytes of the digest (all of an
// MD5; a SHA-256 cut to 128 bits, still far beyond accidental collision): about 5 MiB for 100k
// paths where keeping the paths took 16. Prefixes, when given (the watched trees), keep only the
// paths under them.
//
// Paths a rebuild no longer finds (files an upgrade dropped, a purged package's files) are kept for
// GoneTTL with their last owner, so that the deletions an upgrade causes are still attributed to it.
//
// rpm: the digests come from one `rpm -qa` query (ParseRPMFiles); rpm is read only on the real
// root (RootPath empty), as the packages source does.
type PackageIndex struct {
	cfg      Config
	prefixes []string
	// GoneTTL is how long a path whose owner dropped it is still attributed (default 1 h).
	GoneTTL time.Duration

	build sync.Mutex // one rebuild at a time
	mu    sync.Mutex
	stamp string
	built bool
	pkgs  []pkgMeta
	seed  maphash.Seed
	files map[uint64]fileRec
	gone  map[uint64]goneRec
}

type pkgMeta struct{ key, version string }

// fileRec is kept small on purpose: there is one per owned path.
type fileRec struct {
	pkg   uint32
	flags uint8
	sum   [16]byte
}

const (
	recHasSum   = 1 << iota // sum is valid
	recSHA256               // sum is a SHA-256's first 16 bytes, not an MD5
	recConffile             // a dpkg conffile or rpm %config file: the administrator's to edit
	recShared               // listed by more than one package (directories, mostly)
)

type goneRec struct {
	rec   fileRec
	pkg   pkgMeta
	until time.Time
}

// Ownership is what the index knows about one path.
type Ownership struct {
	// Package is the owner's key as the packages source names it: name:arch.
	Package string
	// Version is the owner's installed version (the last one known, for a Gone path).
	Version string
	// Digest is "md5" or "sha256" when a checksum is recorded (directories, symbolic links and
	// some conffiles have none); Sum holds its first 16 bytes.
	Digest string
	Sum    [16]byte
	// Conffile marks a configuration file: its content is the administrator's, not the package's.
	Conffile bool
	// Shared is true when several packages list the path (directories): Package is one of them.
	Shared bool
	// Gone is true when the package database no longer lists the path: an upgrade dropped it or
	// its package was removed, within GoneTTL.
	Gone bool
}

// Matches reports whether sum (an MD5 for Digest "md5", a SHA-256 for "sha256") is the recorded one.
func (o Ownership) Matches(sum []byte) bool {
	return o.Digest != "" && len(sum) >= 16 && bytes.Equal(o.Sum[:], sum[:16])
}

// NewPackageIndex returns an index of the packages under cfg.RootPath; prefixes (absolute paths,
// without RootPath) limit what is kept. Nothing is read until Refresh or Lookup.
func NewPackageIndex(cfg Config, prefixes []string) *PackageIndex {
	var ps []string
	for _, p := range prefixes {
		ps = append(ps, path.Clean("/"+p))
	}
	return &PackageIndex{cfg: cfg, prefixes: ps, GoneTTL: time.Hour, seed: maphash.MakeSeed()}
}

// Len is the number of owned paths indexed.
func (x *PackageIndex) Len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.files)
}

// Lookup returns the owner of an absolute path (without RootPath), building the index if needed.
// A path in the database under a merged-/usr alias (/bin/ls for /usr/bin/ls) is found either way.
func (x *PackageIndex) Lookup(p string) (Ownership, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.built {
		x.mu.Unlock()
		_, _ = x.Refresh(context.Background())
		x.mu.Lock()
	}
	h := maphash.String(x.seed, path.Clean(p))
	if r, ok := x.files[h]; ok {
		return x.ownership(r, x.pkgs[r.pkg], false), true
	}
	if g, ok := x.gone[h]; ok {
		return x.ownership(g.rec, g.pkg, true), true
	}
	return Ownership{}, false
}

// Version returns a package's installed version, if it is installed.
func (x *PackageIndex) Version(key string) (string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range x.pkgs {
		if p.key == key {
			return p.version, true
		}
	}
	return "", false
}

func (x *PackageIndex) ownership(r fileRec, p pkgMeta, gone bool) Ownership {
	o := Ownership{Package: p.key, Version: p.version, Conffile: r.flags&recConffile != 0, Shared: r.flags&recShared != 0, Gone: gone}
	if r.flags&recHasSum != 0 {
		o.Digest, o.Sum = "md5", r.sum
		if r.flags&recSHA256 != 0 {
			o.Digest = "sha256"
		}
	}
	return o
}

// Refresh rebuilds the index if the package database changed since the last build, and reports
// whether it did.
func (x *PackageIndex) Refresh(ctx context.Context) (bool, error) {
	x.build.Lock()
	defer x.build.Unlock()
	stamp := x.dbStamp()
	x.mu.Lock()
	if x.built && stamp == x.stamp {
		x.mu.Unlock()
		return false, nil
	}
	x.mu.Unlock()
	b := &indexBuilder{x: x, files: map[uint64]fileRec{}, aliases: usrAliases(x.cfg.rootPath)}
	errDpkg := b.dpkg()
	var errRPM error
	if rpm, err := exec.LookPath("rpm"); err == nil && x.cfg.RootPath == "" {
		errRPM = b.rpm(ctx, rpm)
	}
	err := errors.Join(errDpkg, errRPM)
	now := time.Now()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.built {
		// What the previous build owned and this one does not: attribute deletions for a while.
		if x.gone == nil {
			x.gone = map[uint64]goneRec{}
		}
		for p, r := range x.files {
			if _, ok := b.files[p]; !ok {
				x.gone[p] = goneRec{rec: r, pkg: x.pkgs[r.pkg], until: now.Add(x.GoneTTL)}
			}
		}
		for p, g := range x.gone {
			if _, ok := b.files[p]; ok || now.After(g.until) {
				delete(x.gone, p)
			}
		}
	}
	x.files, x.pkgs, x.stamp, x.built = b.files, b.pkgs, stamp, true
	return true, err
}

// dbStamp identifies the package database's state: dpkg replaces its status file and writes the
// info files through renames, which change the directory's mtime; rpm's database is a directory.
func (x *PackageIndex) dbStamp() string {
	var sb strings.Builder
	for _, p := range []string{"/var/lib/dpkg/status", "/var/lib/dpkg/info", "/var/lib/dpkg/diversions", "/var/lib/rpm", "/usr/lib/sysimage/rpm"} {
		var st syscall.Stat_t
		if syscall.Stat(x.cfg.rootPath(p), &st) == nil {
			fmt.Fprintf(&sb, "%s:%d.%d:%d:%d;", p, st.Mtim.Sec, st.Mtim.Nsec, st.Size, st.Ino)
		}
	}
	return sb.String()
}

type indexBuilder struct {
	x       *PackageIndex
	files   map[uint64]fileRec
	pkgs    []pkgMeta
	aliases [][2]string
}

func (b *indexBuilder) wanted(p string) bool {
	if len(b.x.prefixes) == 0 {
		return true
	}
	for _, pre := range b.x.prefixes {
		if pre == "/" || p == pre || (strings.HasPrefix(p, pre) && p[len(pre)] == '/') {
			return true
		}
	}
	return false
}

// canon maps a path through the merged-/usr links (/bin -> usr/bin): dpkg lists /bin/ls, the
// file monitor sees /usr/bin/ls.
func (b *indexBuilder) canon(p string) string {
	for _, a := range b.aliases {
		if strings.HasPrefix(p, a[0]) && (len(p) == len(a[0]) || p[len(a[0])] == '/') {
			return a[1] + p[len(a[0]):]
		}
	}
	return p
}

func (b *indexBuilder) add(p string, pkg uint32, flags uint8, sum []byte) {
	p = b.canon(path.Clean(p))
	if !b.wanted(p) {
		return
	}
	h := maphash.String(b.x.seed, p)
	r, ok := b.files[h]
	if ok && r.pkg != pkg {
		r.flags |= recShared
		b.files[h] = r
		return
	}
	if !ok {
		r = fileRec{pkg: pkg}
	}
	r.flags |= flags
	if sum != nil {
		r.flags |= recHasSum
		copy(r.sum[:], sum)
	}
	b.files[h] = r
}

// usrAliases lists the top-level directories that are links into /usr on this root.
func usrAliases(rootPath func(string) string) [][2]string {
	var out [][2]string
	for _, d := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		t, err := os.Readlink(rootPath(d))
		if err != nil {
			continue
		}
		if !strings.HasPrefix(t, "/") {
			t = path.Join("/", t)
		}
		if t != d {
			out = append(out, [2]string{d, path.Clean(t)})
		}
	}
	return out
}

func (b *indexBuilder) dpkg() error {
	status, err := os.ReadFile(b.x.cfg.rootPath("/var/lib/dpkg/status"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("package index: %w", err)
	}
	var div map[string]diversion
	if data, err := os.ReadFile(b.x.cfg.rootPath("/var/lib/dpkg/diversions")); err == nil {
		div = ParseDpkgDiversions(data)
	}
	info := b.x.cfg.rootPath("/var/lib/dpkg/info")
	var errs []error
	ParseDpkgStatusFiles(status, func(p DpkgPackage) {
		if !installedStatus(p.Status) {
			return
		}
		n := uint32(len(b.pkgs))
		b.pkgs = append(b.pkgs, pkgMeta{key: p.Key(), version: p.Version})
		// Multi-Arch: same packages' files carry the architecture; the others' do not.
		base := filepath.Join(info, p.Name+":"+p.Arch)
		if _, err := os.Stat(base + ".list"); err != nil {
			base = filepath.Join(info, p.Name)
		}
		divert := func(f string) string {
			if d, ok := div[f]; ok && d.by != p.Name {
				return d.to
			}
			return f
		}
		if err := readLines(base+".list", func(line []byte) {
			if len(line) > 0 && line[0] == '/' {
				b.add(divert(string(line)), n, 0, nil)
			}
		}); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		if err := readLines(base+".md5sums", func(line []byte) {
			if f, sum, ok := ParseMD5SumsLine(line); ok {
				b.add(divert(f), n, 0, sum[:])
			}
		}); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		for _, c := range p.Conffiles {
			if c.Obsolete {
				continue
			}
			var sum []byte
			if s, err := hex.DecodeString(c.MD5); err == nil && len(s) == 16 {
				sum = s
			}
			b.add(divert(c.Path), n, recConffile, sum)
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("package index: %w", errors.Join(errs...))
	}
	return nil
}

func readLines(name string, fn func([]byte)) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fn(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// DpkgPackage is one stanza of dpkg's status file, as far as file ownership needs it.
type DpkgPackage struct {
	Name, Arch, Version, Status string
	Conffiles                   []Conffile
}

// Key is the package's object key in the packages source: name:arch.
func (p *DpkgPackage) Key() string {
	if p.Arch == "" {
		return p.Name
	}
	return p.Name + ":" + p.Arch
}

// Conffile is one line of a Conffiles field: " /etc/x 0123...md5 [obsolete|remove-on-upgrade]".
type Conffile struct {
	Path, MD5 string
	Obsolete  bool
}

// ParseDpkgStatusFiles calls fn for every stanza of a dpkg status file, with its conffiles.
func ParseDpkgStatusFiles(data []byte, fn func(DpkgPackage)) {
	var p DpkgPackage
	inConf := false
	flush := func() {
		if p.Name != "" {
			fn(p)
		}
		p, inConf = DpkgPackage{}, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			flush()
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if inConf {
				f := strings.Fields(string(line))
				if len(f) >= 2 && strings.HasPrefix(f[0], "/") {
					c := Conffile{Path: f[0], MD5: f[1]}
					for _, x := range f[2:] {
						c.Obsolete = c.Obsolete || x == "obsolete"
					}
					p.Conffiles = append(p.Conffiles, c)
				}
			}
			continue
		}
		inConf = false
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		val := string(bytes.TrimSpace(v))
		switch string(k) {
		case "Package":
			p.Name = val
		case "Architecture":
			p.Arch = val
		case "Version":
			p.Version = val
		case "Status":
			p.Status = val
		case "Conffiles":
			inConf = true
		}
	}
	flush()
}

// ParseMD5SumsLine reads one line of a dpkg .md5sums file: "<32 hex>  path/without/leading/slash".
func ParseMD5SumsLine(line []byte) (string, [16]byte, bool) {
	var sum [16]byte
	if len(line) < 35 || (line[32] != ' ' && line[32] != '\t') {
		return "", sum, false
	}
	if _, err := hex.Decode(sum[:], line[:32]); err != nil {
		return "", sum, false
	}
	rest := bytes.TrimLeft(line[33:], " \t*")
	if len(rest) == 0 {
		return "", sum, false
	}
	return path.Clean("/" + string(rest)), sum, true
}

type diversion struct{ to, by string }

// ParseDpkgDiversions reads /var/lib/dpkg/diversions: triples of lines (diverted path, where it
// went, the diverting package or ":" for a local diversion).
func ParseDpkgDiversions(data []byte) map[string]diversion {
	out := map[string]diversion{}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	for i := 0; i+2 < len(lines); i += 3 {
		if strings.HasPrefix(lines[i], "/") && strings.HasPrefix(lines[i+1], "/") {
			out[lines[i]] = diversion{to: lines[i+1], by: lines[i+2]}
		}
	}
	return out
}

// rpmFilesQuery prints one line per file of every package; %{=TAG} repeats a package's tag on each.
const rpmFilesQuery = `[%{=NAME}\t%{=ARCH}\t%{=VERSION}-%{=RELEASE}\t%{=FILEDIGESTALGO}\t%{FILEFLAGS}\t%{FILEDIGESTS}\t%{FILENAMES}\n]`

// RPMFile is one line of rpmFilesQuery's output.
type RPMFile struct {
	Key, Version, Path string
	// Digest is "md5" or "sha256" (other algorithms are not kept), "" for no digest.
	Digest string
	Sum    []byte
	Config bool
}

// ParseRPMFiles reads rpmFilesQuery's output, calling fn for each file line.
func ParseRPMFiles(r io.Reader, fn func(RPMFile)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), "\t", 7)
		if len(f) != 7 || f[0] == "" || !strings.HasPrefix(f[6], "/") {
			continue
		}
		rf := RPMFile{Key: f[0], Version: f[2], Path: path.Clean(f[6])}
		if f[1] != "" && f[1] != "(none)" {
			rf.Key += ":" + f[1]
		}
		if flags, err := strconv.ParseUint(f[4], 10, 32); err == nil {
			rf.Config = flags&1 != 0 // RPMFILE_CONFIG
		}
		// PGPHASHALGO: 1 MD5 (and the default of rpm versions without the tag), 8 SHA-256.
		algo := map[string]string{"1": "md5", "(none)": "md5", "": "md5", "8": "sha256"}[f[3]]
		want := map[string]int{"md5": 16, "sha256": 32}[algo]
		if sum, err := hex.DecodeString(f[5]); err == nil && want > 0 && len(sum) == want {
			rf.Digest, rf.Sum = algo, sum
		}
		fn(rf)
	}
	return sc.Err()
}

func (b *indexBuilder) rpm(ctx context.Context, rpm string) error {
	cmd := exec.CommandContext(ctx, rpm, "-qa", "--qf", rpmFilesQuery)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("package index: rpm: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("package index: rpm: %w", err)
	}
	byKey := map[string]uint32{}
	perr := ParseRPMFiles(out, func(f RPMFile) {
		n, ok := byKey[f.Key+"\x00"+f.Version]
		if !ok {
			n = uint32(len(b.pkgs))
			byKey[f.Key+"\x00"+f.Version] = n
			b.pkgs = append(b.pkgs, pkgMeta{key: f.Key, version: f.Version})
		}
		var flags uint8
		if f.Config {
			flags |= recConffile
		}
		if f.Digest == "sha256" {
			flags |= recSHA256
		}
		b.add(f.Path, n, flags, f.Sum)
	})
	werr := cmd.Wait()
	if err := errors.Join(perr, werr); err != nil {
		return fmt.Errorf("package index: rpm -qa: %w", err)
	}
	return nil
}
