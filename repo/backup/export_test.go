package backup

// SetTestHookAfterRead lets tests change a file between reading it and
// checking whether it changed.
func SetTestHookAfterRead(f func(path string)) { testHookAfterRead = f }
