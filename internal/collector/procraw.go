package collector

import (
	"encoding/binary"
	"syscall"
	"unsafe"
)

// The process and listener collectors walk /proc for thousands of processes per scrape. These
// wrappers take paths as NUL-terminated bytes in buffers the callers reuse, because syscall.Openat
// and os.ReadDir allocate for every call, which at 10,000 processes is most of a scrape's garbage.

// procDirent decodes the linux_dirent64 at off: its name, and the offset of the next entry.
func procDirent(buf []byte, off int) (name []byte, next int, ok bool) {
	const nameOff = 19 // d_ino u64, d_off s64, d_reclen u16, d_type u8
	if off < 0 || off+nameOff > len(buf) {
		return nil, 0, false
	}
	reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
	if reclen <= nameOff || off+reclen > len(buf) {
		return nil, 0, false
	}
	name = buf[off+nameOff : off+reclen]
	for i, b := range name {
		if b == 0 {
			name = name[:i]
			break
		}
	}
	return name, off + reclen, true
}

// procOpenat is openat(2) on a NUL-terminated path in a reused buffer: syscall.Openat copies its
// string argument into a new allocation on every call.
func procOpenat(dirfd int, path []byte, flags int) (int, error) {
	for {
		fd, _, errno := syscall.Syscall6(syscall.SYS_OPENAT, uintptr(dirfd),
			uintptr(unsafe.Pointer(&path[0])), uintptr(flags), 0, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(fd), nil
	}
}

// procReadlinkat is readlinkat(2) on a NUL-terminated path, for the same reason as procOpenat.
func procReadlinkat(dirfd int, path, buf []byte) (int, error) {
	n, _, errno := syscall.Syscall6(syscall.SYS_READLINKAT, uintptr(dirfd),
		uintptr(unsafe.Pointer(&path[0])), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
