package testenv

import (
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
)

// bins caches what Binary built in this process.
var bins struct {
	mu    sync.Mutex
	dir   string
	paths map[string]string // by absolute dir or import path
}

// Binary builds a main package of this module, once per process, and returns
// the path of the executable, for tests that run the streamer or a handler
// as a subprocess (and SIGKILL it). pkg is an import path ("tandem/streamer")
// or a directory relative to the test's working directory ("./testdata/hello",
// which ./... does not build). Env.Stop removes the executables.
func Binary(pkg string) (string, error) {
	key := pkg
	if build.IsLocalImport(pkg) {
		// The same relative path means different packages in different tests' directories.
		abs, err := filepath.Abs(pkg)
		if err != nil {
			return "", err
		}
		key = abs
	}
	bins.mu.Lock()
	defer bins.mu.Unlock() // one build at a time; go build itself is parallel
	if p, ok := bins.paths[key]; ok {
		return p, nil
	}
	if bins.dir == "" {
		dir, err := newDir("bin")
		if err != nil {
			return "", err
		}
		bins.dir, bins.paths = dir, map[string]string{}
	}
	// The index keeps tandem/a/handler and tandem/b/handler apart.
	out := filepath.Join(bins.dir, fmt.Sprintf("%d-%s", len(bins.paths), path.Base(filepath.ToSlash(key))))
	// go test puts its own go first on PATH.
	cmd := exec.Command("go", "build", "-o", out, key)
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, output)
	}
	bins.paths[key] = out
	return out, nil
}

// removeBinaries deletes what Binary built; a later Binary builds afresh.
func removeBinaries() error {
	bins.mu.Lock()
	defer bins.mu.Unlock()
	if bins.dir == "" {
		return nil
	}
	err := os.RemoveAll(bins.dir)
	bins.dir, bins.paths = "", nil
	return err
}
