// Package standin is Tandem's local AWS stand-in: moto in server mode (DynamoDB, Step
// Functions with execution, CloudFormation, IAM, ECS, S3, Secrets Manager, ...) behind a
// gateway of ours on 127.0.0.1:4566 that answers Lambda Invoke itself by running the real
// function bootstraps over the Lambda Runtime API, since moto's Lambda needs docker.
// Every other request goes to moto.
package standin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
)

// Gateway routes Lambda Invoke to local workers and everything else to moto.
type Gateway struct {
	Moto *url.URL
	// CodeBucket is the S3 bucket in moto holding the function zips.
	CodeBucket string
	// WorkDir receives each function's bootstrap and log.
	WorkDir string
	// Env is added to every worker (endpoint, credentials, region).
	Env []string
	// MaxWorkers bounds the workers of one function (enough for the Map's concurrency).
	MaxWorkers int
	Log        *slog.Logger

	proxy     *httputil.ReverseProxy
	mu        sync.Mutex
	functions map[string]*function
	closed    bool
}

var invokePath = regexp.MustCompile(`^/2015-03-31/functions/([^/]+)/invocations$`)

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := invokePath.FindStringSubmatch(r.URL.EscapedPath())
	if m == nil || r.Method != http.MethodPost {
		g.proxyOnce().ServeHTTP(w, r)
		return
	}
	name, _ := url.PathUnescape(m[1])
	if err := g.invoke(w, r, functionName(name)); err != nil {
		g.Log.Error("lambda invoke", "function", name, "error", err.Error())
		writeAWSError(w, http.StatusNotFound, "ResourceNotFoundException", err.Error())
	}
}

func (g *Gateway) proxyOnce() *httputil.ReverseProxy {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.proxy == nil {
		g.proxy = httputil.NewSingleHostReverseProxy(g.Moto)
		g.proxy.FlushInterval = -1
	}
	return g.proxy
}

// functionName accepts a name, a full or partial ARN, with or without a qualifier.
func functionName(s string) string {
	if i := strings.Index(s, ":function:"); i >= 0 {
		s = s[i+len(":function:"):]
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	return s
}

// invoke answers one Invoke call the way Lambda does: the payload, and for a function
// error the header X-Amz-Function-Error with {errorMessage, errorType} as the payload.
func (g *Gateway) invoke(w http.ResponseWriter, r *http.Request, name string) error {
	f, err := g.function(r.Context(), name)
	if err != nil {
		return err
	}
	payload, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	inv := f.enqueue(payload)
	if r.Header.Get("X-Amz-Invocation-Type") == "Event" {
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	select {
	case res := <-inv.done:
		w.Header().Set("X-Amz-Executed-Version", "$LATEST")
		if res.functionError != "" {
			w.Header().Set("X-Amz-Function-Error", res.functionError)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(res.payload)
	case <-r.Context().Done():
	}
	return nil
}

// function returns the running function, loading its configuration and code from moto on
// first use.
func (g *Gateway) function(ctx context.Context, name string) (*function, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, fmt.Errorf("the stand-in is shutting down")
	}
	if f, ok := g.functions[name]; ok {
		return f, nil
	}
	f, err := g.load(ctx, name)
	if err != nil {
		return nil, err
	}
	if g.functions == nil {
		g.functions = map[string]*function{}
	}
	g.functions[name] = f
	return f, nil
}

// Close stops every worker; later invocations are refused.
func (g *Gateway) Close() {
	g.mu.Lock()
	g.closed = true
	functions := g.functions
	g.mu.Unlock()
	for _, f := range functions {
		f.close()
	}
}

// motoJSON calls moto directly.
func (g *Gateway) motoJSON(ctx context.Context, path string, out any) error {
	body, err := g.motoGet(ctx, path)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, out)
}

func (g *Gateway) motoGet(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.Moto.String()+path, nil)
	if err != nil {
		return nil, err
	}
	// moto routes by the credential scope of the signature; this is what the SDK sends.
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/"+service(path)+"/aws4_request")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("moto GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	return body, err
}

func service(path string) string {
	if strings.HasPrefix(path, "/2015-03-31/") {
		return "lambda"
	}
	return "s3"
}

func writeAWSError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}
