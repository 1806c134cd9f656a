package backup

// SetTestHookAfterRead lets tests change a file between reading it and
// checking whether it changed.
func SetTestHookAfterRead(f func(path string)) { testHookAfterRead = f }

// XattrReads is how many times the backup listed an entry's extended
// attributes so far in this process.
func XattrReads() uint64 { return xattrReads.Load() }

// SetTestHookBeforeOpen lets tests replace an entry between the walker's
// lstat and its open (of a file or directory) or readlink.
func SetTestHookBeforeOpen(f func(path string)) { testHookBeforeOpen = f }
