package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// linkModel is one direction of an emulated link: its rate in bits per
// second (a kbit is 1,000 bits, as tc and Facebook ATC count), its one-way
// latency, and the largest packet it carries. The zero model is no link
// at all: connections over it are not wrapped.
//
// A connection over the link is wrapped at both ends (linkModel.conn): what
// a side writes leaves packet by packet, each when the link has finished
// sending the one before, and the side's Write waits for that; a packet
// arrives its serialization time plus the latency after it left, and the
// other side's Read returns it no earlier. Both ends are in this process,
// so each packet carries its arrival time in a 12-byte header that the
// reading end strips. Loss, TCP slow start and radio wake-up are left out;
// a connection's set-up costs one round trip (SYN, SYN-ACK) before the
// client may send (dialDelay).
type linkModel struct {
	bps     int
	latency time.Duration
	mtu     int
}

// The emulated 2G link: Facebook ATC's "2G - Developing Rural" profile
// without its 2 % loss (perf_rel_anchors.md §5.1, §5.2).
var (
	// uplink2G is what the phone writes (client → server): 18 kbit/s.
	uplink2G = linkModel{bps: 18_000, latency: 650 * time.Millisecond, mtu: 1400}
	// downlink2G is what the township server writes (server → client):
	// 20 kbit/s.
	downlink2G = linkModel{bps: 20_000, latency: 650 * time.Millisecond, mtu: 1400}
	// local is loopback, unshaped.
	local = linkModel{}
)

func (m linkModel) isLocal() bool { return m == linkModel{} }

// serialize returns how long the link takes to send n bytes (none on an
// unlimited link).
func (m linkModel) serialize(n int) time.Duration {
	if m.bps <= 0 {
		return 0
	}
	return time.Duration(int64(n) * 8 * int64(time.Second) / int64(m.bps))
}

// dialDelay is the round trip of a TCP handshake over up and down.
func dialDelay(up, down linkModel) time.Duration { return up.latency + down.latency }

// conn wraps c, one end of a connection over the link, whose writes go over
// m.
func (m linkModel) conn(c net.Conn) net.Conn {
	if m.isLocal() {
		return c
	}
	return &shapedConn{Conn: c, out: m}
}

// listener wraps the connections l accepts, whose writes go over m.
func (m linkModel) listener(l net.Listener) net.Listener {
	if m.isLocal() {
		return l
	}
	return shapedListener{Listener: l, m: m}
}

type shapedListener struct {
	net.Listener
	m linkModel
}

func (l shapedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.m.conn(c), nil
}

const packetHeader = 12 // arrival (Unix ns) and payload length

type shapedConn struct {
	net.Conn
	out linkModel

	wmu  sync.Mutex
	free time.Time // when the link has sent this side's last packet

	rmu     sync.Mutex
	pending []byte // arrived, not yet read
	buf     []byte
}

func (c *shapedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	mtu := c.out.mtu
	if mtu <= 0 {
		mtu = 1 << 16
	}
	written := 0
	for len(p) > 0 {
		n := min(len(p), mtu)
		now := time.Now()
		leave := now
		if c.free.After(now) {
			leave = c.free
			time.Sleep(leave.Sub(now))
		}
		c.free = leave.Add(c.out.serialize(n))
		arrive := c.free.Add(c.out.latency)
		pkt := make([]byte, packetHeader+n)
		binary.BigEndian.PutUint64(pkt, uint64(arrive.UnixNano()))
		binary.BigEndian.PutUint32(pkt[8:], uint32(n))
		copy(pkt[packetHeader:], p[:n])
		if _, err := c.Conn.Write(pkt); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

func (c *shapedConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.pending) == 0 {
		var h [packetHeader]byte
		if _, err := io.ReadFull(c.Conn, h[:]); err != nil {
			return 0, err
		}
		arrive := time.Unix(0, int64(binary.BigEndian.Uint64(h[:])))
		n := int(binary.BigEndian.Uint32(h[8:]))
		if n > 1<<20 {
			return 0, fmt.Errorf("bench link: packet of %d bytes", n)
		}
		if cap(c.buf) < n {
			c.buf = make([]byte, n)
		}
		c.buf = c.buf[:n]
		if _, err := io.ReadFull(c.Conn, c.buf); err != nil {
			return 0, err
		}
		time.Sleep(time.Until(arrive))
		c.pending = c.buf
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// The link model counts a kbit as 1,000 bits, and carries what each side
// writes to the other intact, in order, in packets of at most its MTU.
func TestLinkModel(t *testing.T) {
	if got := uplink2G.serialize(2250); got != time.Second {
		t.Errorf("2,250 B at 18 kbit/s take %v, want 1 s", got)
	}
	if got := downlink2G.serialize(2500); got != time.Second {
		t.Errorf("2,500 B at 20 kbit/s take %v, want 1 s", got)
	}
	if got := dialDelay(uplink2G, downlink2G); got != 1300*time.Millisecond {
		t.Errorf("a TCP handshake takes %v, want 1.3 s", got)
	}
	fast := linkModel{bps: 8 << 20, latency: time.Millisecond, mtu: 100}
	a, b := net.Pipe()
	ca, cb := fast.conn(a), fast.conn(b)
	defer ca.Close()
	defer cb.Close()
	msg := make([]byte, 1000)
	for i := range msg {
		msg[i] = byte(i)
	}
	go func() {
		ca.Write(msg[:10])
		ca.Write(msg[10:])
	}()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(cb, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %v, %v; want the bytes written", err, got[:20])
	}
	if sc := ca.(*shapedConn); sc.free.IsZero() {
		t.Error("the writing side did not account for its packets")
	}
}
