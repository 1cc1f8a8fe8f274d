package e2e

import (
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
)

// CutKind says where a CuttingProxy cuts a connection.
type CutKind int

const (
	// CutToServer cuts after a number of bytes from the client to the server:
	// mid-handshake, mid-request or between requests.
	CutToServer CutKind = iota
	// CutToClient cuts after a number of bytes from the server to the client,
	// wherever they fall in the HTTP/2 frames.
	CutToClient
	// CutResponse cuts just before the proxy would forward the first HTTP/2
	// DATA frame of the connection's n-th call (stream id 2n-1) from the
	// server: the server has answered (a push it committed, say) but the
	// client never sees the answer.
	CutResponse
	numCutKinds
)

func (k CutKind) String() string {
	switch k {
	case CutToServer:
		return "to-server"
	case CutToClient:
		return "to-client"
	case CutResponse:
		return "response"
	}
	return "unknown"
}

// A CuttingProxy forwards TCP connections from 127.0.0.1 to a target address
// and, while cutting is on, cuts each new connection at a point drawn from a
// seeded random stream: after a number of bytes in either direction
// (log-uniform between 1 and MaxCutBytes), or just before a response from the
// server reaches the client. A cut closes both sides at once. The plan of the
// n-th connection depends only on the seed and n, so a client whose
// connections are sequential sees the same cut points when the seed is
// replayed (the bytes themselves differ from run to run: ids, times, gzip).
//
// The proxy reads the server-to-client stream as HTTP/2 frames (a gRPC
// server speaks HTTP/2 from its first byte), which is how it finds responses;
// it never looks inside a frame.
type CuttingProxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	rng     *rand.Rand
	cutting bool
	forced  *plan
	conns   map[net.Conn]struct{}
	closed  bool

	wg    sync.WaitGroup
	cuts  [numCutKinds]atomic.Int64
	total atomic.Int64
}

// MaxCutBytes bounds the byte offset of a cut.
const MaxCutBytes = 64 << 10

// maxResponseCut bounds n for CutResponse. The SDK's calls on a connection
// are Hello (1), Pull (2, asked for before the push so that it travels down
// while the push travels up), then the pushes (3 on). Half the response cuts
// are at the third: the answer to the first push.
const maxResponseCut = 6

// NewCuttingProxy listens on 127.0.0.1:0 and forwards every connection to
// target. Cutting is off until SetCutting(true).
func NewCuttingProxy(target string, seed uint64) (*CuttingProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &CuttingProxy{
		target: target,
		ln:     ln,
		rng:    rand.New(rand.NewPCG(seed, 0x70726f7879)),
		conns:  make(map[net.Conn]struct{}),
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address clients dial.
func (p *CuttingProxy) Addr() string { return p.ln.Addr().String() }

// SetCutting turns cutting of new connections on or off; connections already
// open keep their plan.
func (p *CuttingProxy) SetCutting(on bool) {
	p.mu.Lock()
	p.cutting = on
	p.mu.Unlock()
}

// CutNext makes the proxy cut the next connection it accepts, cutting on or
// off, at a point chosen by the caller: after n bytes (CutToServer,
// CutToClient) or before the n-th DATA frame from the server (CutResponse).
func (p *CuttingProxy) CutNext(kind CutKind, n int64) {
	p.mu.Lock()
	p.forced = &plan{cut: true, kind: kind, n: n}
	p.mu.Unlock()
}

// Cuts returns the number of connections the proxy has cut.
func (p *CuttingProxy) Cuts() int { return int(p.total.Load()) }

// CutsOf returns the number of cuts of kind k.
func (p *CuttingProxy) CutsOf(k CutKind) int { return int(p.cuts[k].Load()) }

// Close stops listening, closes every open connection and waits for the
// proxy's goroutines.
func (p *CuttingProxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// plan is where one connection is cut; cut is false for no cut.
type plan struct {
	cut  bool
	kind CutKind
	n    int64 // bytes (CutToServer, CutToClient) or the call (CutResponse)
}

func (p *CuttingProxy) nextPlan() plan {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Draw the same numbers whether cutting is on or not, so that the plan
	// of the n-th connection does not depend on when cutting was turned on.
	kind := CutKind(p.rng.IntN(int(numCutKinds)))
	bytes := int64(math.Exp(p.rng.Float64() * math.Log(MaxCutBytes)))
	call := int64(1 + p.rng.IntN(maxResponseCut))
	if p.rng.IntN(2) == 0 {
		call = 3 // the answer to the first push, if any: the costliest to lose
	}
	pl := plan{cut: p.cutting, kind: kind, n: bytes}
	if kind == CutResponse {
		pl.n = call
	}
	if p.forced != nil {
		pl, p.forced = *p.forced, nil
	}
	return pl
}

func (p *CuttingProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *CuttingProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *CuttingProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		pl := p.nextPlan()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(client, pl)
		}()
	}
}

// link is one proxied connection. cut closes both sides once and counts the
// cut if it was the plan's.
type link struct {
	p              *CuttingProxy
	client, server net.Conn
	once           sync.Once
}

func (l *link) close(planned *plan) {
	l.once.Do(func() {
		l.client.Close()
		l.server.Close()
		if planned != nil {
			l.p.cuts[planned.kind].Add(1)
			l.p.total.Add(1)
		}
	})
}

func (p *CuttingProxy) serve(client net.Conn, pl plan) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client) {
		client.Close()
		server.Close()
		return
	}
	if !p.track(server) {
		p.untrack(client)
		client.Close()
		server.Close()
		return
	}
	defer p.untrack(client)
	defer p.untrack(server)
	l := &link{p: p, client: client, server: server}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var budget int64 = -1
		if pl.cut && pl.kind == CutToServer {
			budget = pl.n
		}
		if copyBytes(server, client, budget) {
			l.close(&pl)
			return
		}
		// The client finished sending: pass the half-close on.
		if tc, ok := server.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	var budget, frames int64 = -1, -1
	if pl.cut && pl.kind == CutToClient {
		budget = pl.n
	}
	if pl.cut && pl.kind == CutResponse {
		frames = pl.n
	}
	if copyFrames(client, server, budget, frames) {
		l.close(&pl)
	} else {
		l.close(nil)
	}
	<-done
}

// copyBytes copies src to dst until EOF or an error, or until budget bytes
// (budget >= 0) have been copied, and reports whether it stopped for the
// budget.
func copyBytes(dst io.Writer, src io.Reader, budget int64) bool {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if budget >= 0 && int64(n) >= budget {
				chunk = chunk[:budget]
			}
			if _, werr := dst.Write(chunk); werr != nil {
				return false
			}
			if budget >= 0 {
				budget -= int64(len(chunk))
				if budget == 0 {
					return true
				}
			}
		}
		if err != nil {
			return false
		}
	}
}

// copyFrames copies HTTP/2 frames from src to dst until EOF or an error, and
// reports whether it stopped for a cut: after budget bytes (budget >= 0), or
// before the first DATA frame with a payload of the call-th stream (stream
// id 2·call-1, call > 0), which it does not forward.
func copyFrames(dst io.Writer, src io.Reader, budget, call int64) bool {
	var hdr [9]byte
	buf := make([]byte, 0, 16<<10)
	for {
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			return false
		}
		length := int(hdr[0])<<16 | int(binary.BigEndian.Uint16(hdr[1:3]))
		buf = append(buf[:0], hdr[:]...)
		buf = append(buf, make([]byte, length)...)
		if _, err := io.ReadFull(src, buf[len(hdr):]); err != nil {
			return false
		}
		const typeData = 0
		stream := int64(binary.BigEndian.Uint32(hdr[5:9]) & 0x7fffffff)
		if hdr[3] == typeData && length > 0 && call > 0 && stream == 2*call-1 {
			return true
		}
		out := buf
		if budget >= 0 && int64(len(out)) >= budget {
			out = out[:budget]
		}
		if _, err := dst.Write(out); err != nil {
			return false
		}
		if budget >= 0 {
			budget -= int64(len(out))
			if budget == 0 {
				return true
			}
		}
	}
}
