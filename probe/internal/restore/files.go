package restore

import "backstop/shared/atomicfile"

func writeFileAtomic(path string, data []byte) error { return atomicfile.Write(path, data, 0o600) }
