// Package motoserver holds moto_server.py: moto in server mode with the patches Tandem
// needs (its docstring lists them). The local AWS stand-in and the test harness both run
// it, so tests and the local pipeline see the same moto.
package motoserver

import _ "embed"

// Script is moto_server.py. Run it as: python3 moto_server.py PORT LAMBDA_PORT.
//
//go:embed moto_server.py
var Script []byte
