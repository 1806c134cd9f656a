package wire

// SetTestHookBatcherStart lets tests hold an uploader's batcher until
// they queued what they want it to find.
func SetTestHookBatcherStart(f func()) { testHookBatcherStart = f }
