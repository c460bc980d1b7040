package testenv

// A minimal MySQL/MariaDB text-protocol client: handshake with mysql_native_password (or an
// empty password), COM_QUERY and text result sets. It is all testenv needs (readiness checks,
// CREATE DATABASE, fixtures), and keeps this package free of a MySQL driver dependency.

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

const (
	clientLongPassword     = 1 << 0
	clientConnectWithDB    = 1 << 3
	clientProtocol41       = 1 << 9
	clientTransactions     = 1 << 13
	clientSecureConnection = 1 << 15
	clientPluginAuth       = 1 << 19

	comQuit  = 0x01
	comQuery = 0x03

	nativePassword = "mysql_native_password"
	maxPacket      = 1<<24 - 1
)

type mysqlConn struct {
	nc  net.Conn
	r   *bufio.Reader
	seq byte
}

// mysqlError is an ERR packet.
type mysqlError struct {
	Code    uint16
	State   string
	Message string
}

func (e *mysqlError) Error() string {
	return fmt.Sprintf("mysql error %d (%s): %s", e.Code, e.State, e.Message)
}

func dialMySQL(ctx context.Context, addr, user, password, db string) (*mysqlConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	} else {
		nc.SetDeadline(time.Now().Add(time.Minute))
	}
	c := &mysqlConn{nc: nc, r: bufio.NewReader(nc)}
	if err := c.handshake(user, password, db); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *mysqlConn) close() {
	c.seq = 0
	c.writePacket([]byte{comQuit})
	c.nc.Close()
}

func (c *mysqlConn) readPacket() ([]byte, error) {
	var out []byte
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			return nil, fmt.Errorf("read packet: %w", err)
		}
		n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
		c.seq = hdr[3] + 1
		buf := make([]byte, n)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return nil, fmt.Errorf("read packet: %w", err)
		}
		out = append(out, buf...)
		if n < maxPacket {
			return out, nil
		}
	}
}

func (c *mysqlConn) writePacket(payload []byte) error {
	for {
		n := min(len(payload), maxPacket)
		hdr := []byte{byte(n), byte(n >> 8), byte(n >> 16), c.seq}
		c.seq++
		if _, err := c.nc.Write(append(hdr, payload[:n]...)); err != nil {
			return fmt.Errorf("write packet: %w", err)
		}
		payload = payload[n:]
		if n < maxPacket {
			return nil
		}
	}
}

func (c *mysqlConn) handshake(user, password, db string) error {
	pkt, err := c.readPacket()
	if err != nil {
		return err
	}
	if len(pkt) > 0 && pkt[0] == 0xff {
		return parseErr(pkt)
	}
	if len(pkt) < 1 || pkt[0] != 10 {
		return fmt.Errorf("unsupported handshake protocol version %d", pkt[0])
	}
	p := pkt[1:]
	_, p, err = nulString(p) // server version
	if err != nil || len(p) < 4+8+1+2 {
		return errors.New("short handshake packet")
	}
	p = p[4:] // connection id
	salt := append([]byte(nil), p[:8]...)
	p = p[8+1:]
	caps := uint32(binary.LittleEndian.Uint16(p))
	p = p[2:]
	plugin := nativePassword
	if len(p) >= 1+2+2+1+10 {
		caps |= uint32(binary.LittleEndian.Uint16(p[3:])) << 16
		authLen := int(p[5])
		p = p[16:]
		if caps&clientSecureConnection != 0 {
			n := max(13, authLen-8)
			if len(p) < n {
				return errors.New("short handshake packet")
			}
			salt = append(salt, p[:n]...)
			p = p[n:]
		}
		if caps&clientPluginAuth != 0 && len(p) > 0 {
			plugin, _, _ = nulString(p)
		}
	}
	if len(salt) > 20 {
		salt = salt[:20]
	}
	if caps&clientProtocol41 == 0 || caps&clientSecureConnection == 0 {
		return errors.New("server does not support protocol 4.1 authentication")
	}

	auth, err := scramble(plugin, salt, password)
	if err != nil {
		return err
	}
	flags := uint32(clientLongPassword | clientProtocol41 | clientTransactions | clientSecureConnection)
	if caps&clientPluginAuth != 0 {
		flags |= clientPluginAuth
	}
	if db != "" {
		flags |= clientConnectWithDB
	}
	resp := binary.LittleEndian.AppendUint32(nil, flags)
	resp = binary.LittleEndian.AppendUint32(resp, maxPacket)
	resp = append(resp, 45) // utf8mb4_general_ci
	resp = append(resp, make([]byte, 23)...)
	resp = append(append(resp, user...), 0)
	resp = append(append(resp, byte(len(auth))), auth...)
	if db != "" {
		resp = append(append(resp, db...), 0)
	}
	if flags&clientPluginAuth != 0 {
		resp = append(append(resp, plugin...), 0)
	}
	if err := c.writePacket(resp); err != nil {
		return err
	}

	for range 3 {
		pkt, err := c.readPacket()
		if err != nil {
			return err
		}
		switch {
		case len(pkt) == 0:
			return errors.New("empty auth response")
		case pkt[0] == 0x00:
			return nil
		case pkt[0] == 0xff:
			return parseErr(pkt)
		case pkt[0] == 0xfe: // auth switch request
			name, rest, err := nulString(pkt[1:])
			if err != nil {
				return errors.New("malformed auth switch request")
			}
			if len(rest) > 20 {
				rest = rest[:20]
			}
			auth, err := scramble(name, rest, password)
			if err != nil {
				return err
			}
			if err := c.writePacket(auth); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unsupported auth response 0x%02x (only %s is supported)", pkt[0], nativePassword)
		}
	}
	return errors.New("authentication did not finish")
}

func scramble(plugin string, salt []byte, password string) ([]byte, error) {
	if plugin != nativePassword {
		if password == "" {
			return nil, nil
		}
		return nil, fmt.Errorf("unsupported authentication plugin %q (only %s is supported)", plugin, nativePassword)
	}
	if password == "" {
		return nil, nil
	}
	stage1 := sha1.Sum([]byte(password))
	stage2 := sha1.Sum(stage1[:])
	h := sha1.New()
	h.Write(salt)
	h.Write(stage2[:])
	out := h.Sum(nil)
	for i := range out {
		out[i] ^= stage1[i]
	}
	return out, nil
}

// query runs one statement and returns its rows (nil for statements without a result set);
// NULL values are nil.
func (c *mysqlConn) query(q string) ([][]*string, error) {
	c.seq = 0
	if err := c.writePacket(append([]byte{comQuery}, q...)); err != nil {
		return nil, err
	}
	pkt, err := c.readPacket()
	if err != nil {
		return nil, err
	}
	if len(pkt) == 0 {
		return nil, errors.New("empty response")
	}
	switch pkt[0] {
	case 0x00:
		return nil, nil
	case 0xff:
		return nil, parseErr(pkt)
	case 0xfb:
		return nil, errors.New("LOAD DATA LOCAL is not supported")
	}
	ncols, _, ok := lenencInt(pkt)
	if !ok {
		return nil, errors.New("malformed column count")
	}
	for i := uint64(0); i < ncols; i++ { // column definitions
		if _, err := c.readPacket(); err != nil {
			return nil, err
		}
	}
	if pkt, err = c.readPacket(); err != nil { // EOF after column definitions
		return nil, err
	}
	if len(pkt) == 0 || pkt[0] != 0xfe {
		return nil, errors.New("expected EOF after column definitions")
	}
	var rows [][]*string
	for {
		pkt, err := c.readPacket()
		if err != nil {
			return nil, err
		}
		if len(pkt) > 0 && pkt[0] == 0xfe && len(pkt) < 9 {
			return rows, nil
		}
		if len(pkt) > 0 && pkt[0] == 0xff {
			return nil, parseErr(pkt)
		}
		row := make([]*string, 0, ncols)
		for i := uint64(0); i < ncols; i++ {
			if len(pkt) > 0 && pkt[0] == 0xfb {
				row = append(row, nil)
				pkt = pkt[1:]
				continue
			}
			n, rest, ok := lenencInt(pkt)
			if !ok || uint64(len(rest)) < n {
				return nil, errors.New("malformed row")
			}
			s := string(rest[:n])
			row = append(row, &s)
			pkt = rest[n:]
		}
		rows = append(rows, row)
	}
}

func parseErr(pkt []byte) error {
	if len(pkt) < 3 {
		return errors.New("malformed error packet")
	}
	e := &mysqlError{Code: binary.LittleEndian.Uint16(pkt[1:])}
	msg := pkt[3:]
	if len(msg) >= 6 && msg[0] == '#' {
		e.State = string(msg[1:6])
		msg = msg[6:]
	}
	e.Message = string(msg)
	return e
}

func nulString(b []byte) (string, []byte, error) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], nil
		}
	}
	return "", nil, errors.New("unterminated string")
}

func lenencInt(b []byte) (uint64, []byte, bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	var n int
	switch b[0] {
	case 0xfc:
		n = 2
	case 0xfd:
		n = 3
	case 0xfe:
		n = 8
	case 0xfb, 0xff:
		return 0, nil, false
	default:
		return uint64(b[0]), b[1:], true
	}
	if len(b) < 1+n {
		return 0, nil, false
	}
	var v uint64
	for i := n; i >= 1; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, b[1+n:], true
}
