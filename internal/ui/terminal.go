package ui

import "os"

// IsTerminal reports whether f is a character device, which for stdout means a terminal. It
// uses the file mode rather than an ioctl to avoid a dependency; /dev/null also passes, which
// only costs colours nobody sees.
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	return fi.Mode()&os.ModeCharDevice != 0
}
