package fim

import (
	"encoding/hex"
	"strings"
	"syscall"
	"time"
)

// Type is a file's type as lstat sees it.
type Type byte

// The types recorded. Other covers FIFOs, sockets and device nodes, whose content is never read.
const (
	TypeFile    Type = 'f'
	TypeDir     Type = 'd'
	TypeSymlink Type = 'l'
	TypeOther   Type = 'o'
)

func (t Type) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "directory"
	case TypeSymlink:
		return "symlink"
	case TypeOther:
		return "other"
	}
	return "unknown"
}

// Entry is what the baseline records about one path. Path is relative to the tree's root, "/"
// separated, "" for the root itself.
type Entry struct {
	Path    string
	Type    Type
	Size    int64
	Mode    uint32 // st_mode: permission, setuid/setgid/sticky and type bits
	UID     uint32
	GID     uint32
	Mtime   int64 // nanoseconds since the epoch
	Ctime   int64
	Inode   uint64
	Link    string // a symbolic link's target, never followed
	HasHash bool   // false for non-regular files and for files that could not be read
	SHA256  [32]byte
}

// Hash returns the SHA-256 in hex, or "" when there is none.
func (e *Entry) Hash() string {
	if !e.HasHash {
		return ""
	}
	return hex.EncodeToString(e.SHA256[:])
}

func entryFromStat(rel string, st *syscall.Stat_t) Entry {
	e := Entry{
		Path:  rel,
		Size:  st.Size,
		Mode:  st.Mode,
		UID:   st.Uid,
		GID:   st.Gid,
		Mtime: time.Unix(st.Mtim.Unix()).UnixNano(),
		Ctime: time.Unix(st.Ctim.Unix()).UnixNano(),
		Inode: st.Ino,
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		e.Type = TypeFile
	case syscall.S_IFDIR:
		e.Type = TypeDir
		e.Size = 0 // a directory's size says nothing the entries' events do not
	case syscall.S_IFLNK:
		e.Type = TypeSymlink
	default:
		e.Type = TypeOther
	}
	return e
}

// mayHaveChanged is the cheap test that decides re-hashing: what stat would show after any write.
func mayHaveChanged(old, cur *Entry) bool {
	return old.Type != cur.Type || old.Size != cur.Size || old.Mtime != cur.Mtime ||
		old.Ctime != cur.Ctime || old.Inode != cur.Inode || !old.HasHash
}

// Attribute names, as events list them.
const (
	AttrType  = "type"
	AttrSize  = "size"
	AttrMode  = "mode"
	AttrUID   = "uid"
	AttrGID   = "gid"
	AttrMtime = "mtime"
	AttrCtime = "ctime"
	AttrInode = "inode"
	AttrLink  = "link_target"
	AttrHash  = "sha256"
)

// diff lists the attributes that differ, and whether the content (hash, link target or type) changed.
func diff(old, cur *Entry, dirTimes bool) (changed []string, content bool) {
	if old.Type != cur.Type {
		changed = append(changed, AttrType)
		content = true
	}
	if old.Size != cur.Size {
		changed = append(changed, AttrSize)
	}
	if old.Mode != cur.Mode && (old.Type != cur.Type || old.Mode&^syscall.S_IFMT != cur.Mode&^syscall.S_IFMT) {
		changed = append(changed, AttrMode)
	}
	if old.UID != cur.UID {
		changed = append(changed, AttrUID)
	}
	if old.GID != cur.GID {
		changed = append(changed, AttrGID)
	}
	times := dirTimes || cur.Type != TypeDir || old.Type != TypeDir
	if times && old.Mtime != cur.Mtime {
		changed = append(changed, AttrMtime)
	}
	if times && old.Ctime != cur.Ctime {
		changed = append(changed, AttrCtime)
	}
	if old.Inode != cur.Inode {
		changed = append(changed, AttrInode)
	}
	if old.Link != cur.Link {
		changed = append(changed, AttrLink)
		content = true
	}
	// A file whose hash is unknown on either side (unreadable) is not said to have changed content.
	if old.HasHash && cur.HasHash && old.SHA256 != cur.SHA256 {
		changed = append(changed, AttrHash)
		content = true
	}
	return changed, content
}

// comparePaths orders paths as a depth-first walk over sorted directory listings visits them: "/"
// sorts before every other byte, so "a/b" comes before "a.txt" and a directory precedes its contents.
func comparePaths(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return -1
		}
		if cb == '/' {
			return 1
		}
		if ca < cb {
			return -1
		}
		return 1
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// joinRel joins a relative directory path and a name.
func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// under reports whether rel is inside the directory dir (not dir itself).
func under(rel, dir string) bool {
	if dir == "" {
		return rel != ""
	}
	return len(rel) > len(dir) && rel[len(dir)] == '/' && strings.HasPrefix(rel, dir)
}
