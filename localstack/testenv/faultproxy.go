package testenv

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// FaultRates are the probabilities (0..1) of each fault per request. At most one fault
// hits a request, drawn in the order of the fields; latency comes on top of any of them.
type FaultRates struct {
	// Throttle answers HTTP 400 with ProvisionedThroughputExceededException or
	// ThrottlingException (half each), the bodies DynamoDB sends.
	Throttle float64
	// ServerError answers 500 InternalServerError or 503 ServiceUnavailable (half each).
	ServerError float64
	// Reset resets the connection before the request reaches DynamoDB.
	Reset float64
	// Drop forwards the request (the write happens) and then resets the connection
	// instead of answering: the client cannot tell whether it happened, and retries.
	Drop float64
	// Latency delays the request by LatencySpike before anything else happens.
	Latency      float64
	LatencySpike time.Duration
}

// FaultCounts is what a FaultProxy injected, and how many requests it saw.
type FaultCounts struct {
	Requests, Forwarded                                       int64
	Throttled, ServerErrors, Resets, Dropped, Delayed, Outage int64
}

func (c FaultCounts) String() string {
	return fmt.Sprintf("requests=%d forwarded=%d throttled=%d 5xx=%d resets=%d dropped_after_write=%d latency_spikes=%d outage_refusals=%d",
		c.Requests, c.Forwarded, c.Throttled, c.ServerErrors, c.Resets, c.Dropped, c.Delayed, c.Outage)
}

// FaultProxy is an HTTP proxy in front of a DynamoDB endpoint (moto) that injects the
// faults DynamoDB really produces, at configurable rates, with seeded randomness, and an
// outage switch during which every request fails with 503. TANDEM_FAULTPROXY_LOG=1 prints
// every error DynamoDB itself returned through it.
type FaultProxy struct {
	// Endpoint is the proxy's URL, http://127.0.0.1:PORT; point clients at it.
	Endpoint string

	target string
	client *http.Client
	srv    *http.Server
	ln     net.Listener

	mu     sync.Mutex
	rng    *rand.Rand
	rates  FaultRates
	outage atomic.Bool

	requests, forwarded, throttled, serverErrors, resets, dropped, delayed, refused atomic.Int64
}

// StartFaultProxy listens on a free port and forwards to target (e.g. Moto.Endpoint).
// The same seed draws the same faults for the same sequence of requests.
func StartFaultProxy(target string, seed uint64, rates FaultRates) (*FaultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &FaultProxy{
		Endpoint: "http://" + ln.Addr().String(),
		target:   strings.TrimRight(target, "/"),
		client:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		ln:       ln,
		rng:      rand.New(rand.NewPCG(seed, seed^0x5bd1e995)),
		rates:    rates,
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve)}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// SetRates changes the fault rates from the next request on.
func (p *FaultProxy) SetRates(r FaultRates) {
	p.mu.Lock()
	p.rates = r
	p.mu.Unlock()
}

// SetOutage turns the total outage on or off: while on, every request is answered 503
// without reaching DynamoDB.
func (p *FaultProxy) SetOutage(on bool) { p.outage.Store(on) }

// Counts returns what was injected so far.
func (p *FaultProxy) Counts() FaultCounts {
	return FaultCounts{
		Requests: p.requests.Load(), Forwarded: p.forwarded.Load(),
		Throttled: p.throttled.Load(), ServerErrors: p.serverErrors.Load(), Resets: p.resets.Load(),
		Dropped: p.dropped.Load(), Delayed: p.delayed.Load(), Outage: p.refused.Load(),
	}
}

// Close stops the proxy.
func (p *FaultProxy) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	if err != nil {
		err = p.srv.Close()
	}
	return err
}

// AWSConfig is Moto.AWSConfig, through the proxy.
func (p *FaultProxy) AWSConfig() aws.Config {
	return awsConfig(p.Endpoint)
}

// EnvVars is Moto.EnvVars, through the proxy.
func (p *FaultProxy) EnvVars() []string { return envVars(p.Endpoint) }

type faultKind int

const (
	faultNone faultKind = iota
	faultThrottle
	faultThrottleAlt
	fault500
	fault503
	faultReset
	faultDrop
)

// draw picks this request's fault and whether it is delayed, under one lock so that the
// sequence of draws depends only on the seed and the order of requests.
func (p *FaultProxy) draw() (faultKind, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rates
	var delay time.Duration
	if r.Latency > 0 && p.rng.Float64() < r.Latency {
		delay = r.LatencySpike
	}
	x := p.rng.Float64()
	half := p.rng.IntN(2) == 0
	for _, c := range []struct {
		rate float64
		a, b faultKind
	}{{r.Throttle, faultThrottle, faultThrottleAlt}, {r.ServerError, fault500, fault503}, {r.Reset, faultReset, faultReset}, {r.Drop, faultDrop, faultDrop}} {
		if x < c.rate {
			if half {
				return c.a, delay
			}
			return c.b, delay
		}
		x -= c.rate
	}
	return faultNone, delay
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if p.outage.Load() {
		p.refused.Add(1)
		awsError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "fault proxy: outage")
		return
	}
	kind, delay := p.draw()
	if delay > 0 {
		p.delayed.Add(1)
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	switch kind {
	case faultThrottle:
		p.throttled.Add(1)
		awsError(w, http.StatusBadRequest, "ProvisionedThroughputExceededException", "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.")
		return
	case faultThrottleAlt:
		p.throttled.Add(1)
		awsError(w, http.StatusBadRequest, "ThrottlingException", "Rate of requests exceeds the allowed throughput.")
		return
	case fault500:
		p.serverErrors.Add(1)
		awsError(w, http.StatusInternalServerError, "InternalServerError", "Internal server error")
		return
	case fault503:
		p.serverErrors.Add(1)
		awsError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "Service unavailable")
		return
	case faultReset:
		p.resets.Add(1)
		reset(w)
		return
	}
	resp, err := p.forward(r, body)
	if err != nil {
		awsError(w, http.StatusBadGateway, "InternalServerError", "fault proxy: "+err.Error())
		return
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		reset(w)
		return
	}
	p.forwarded.Add(1)
	if resp.StatusCode >= 300 && os.Getenv("TANDEM_FAULTPROXY_LOG") != "" {
		fmt.Fprintf(os.Stderr, "faultproxy: %s %s -> %d %s\n", r.Header.Get("X-Amz-Target"), body, resp.StatusCode, respBody)
	}
	if kind == faultDrop {
		// The write happened; the client never learns it.
		p.dropped.Add(1)
		reset(w)
		return
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(respBody)
}

func (p *FaultProxy) forward(r *http.Request, body []byte) (*http.Response, error) {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	out.Header = r.Header.Clone()
	out.Host = r.Host
	return p.client.Do(out)
}

// awsError answers like DynamoDB's JSON protocol does, so the SDK sees the real error code.
func awsError(w http.ResponseWriter, status int, code, msg string) {
	body := fmt.Sprintf(`{"__type":"com.amazonaws.dynamodb.v20120810#%s","message":%q}`, code, msg)
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(body))), 10))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// reset closes the client's connection with a TCP RST (SO_LINGER 0), as a crashed load
// balancer or a network fault does.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("fault proxy: connection cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}

func awsConfig(endpoint string) aws.Config {
	return aws.Config{
		Region:       motoRegion,
		Credentials:  aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(motoKey, motoKey, "")),
		BaseEndpoint: aws.String(endpoint),
	}
}

func envVars(endpoint string) []string {
	return []string{
		"AWS_ENDPOINT_URL=" + endpoint,
		"AWS_REGION=" + motoRegion,
		"AWS_ACCESS_KEY_ID=" + motoKey,
		"AWS_SECRET_ACCESS_KEY=" + motoKey,
	}
}
