//go:build !unix

package wasmbuild

// lockFile does nothing where there is no flock: two test processes may then build the same
// module at once, which wastes time but is safe (each writes its own temp file and renames).
func lockFile(string) (func(), error) { return func() {}, nil }
