// Command finalize sweeps a table whose snapshot is done and reports whether it is
// consistent (input and output: pipeline.Finalize).
package main

import "tandem/shared/pipeline"

func main() { pipeline.Main("finalize", (*pipeline.Env).FinalizeStep) }
