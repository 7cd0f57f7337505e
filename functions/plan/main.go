// Command plan checks PostgreSQL, ensures the publication and the slot, creates the
// target tables and marks their snapshots pending (input and output: pipeline.Plan).
package main

import "tandem/shared/pipeline"

func main() { pipeline.Main("plan", (*pipeline.Env).Plan) }
