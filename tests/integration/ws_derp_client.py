#!/usr/bin/python3
"""An independent DERP-over-WebSocket client for websocket_test.

Nothing of derpd's: Debian's python3-websockets speaks RFC 6455 (its own
handshake, framing and masking) and PyNaCl makes the DERP handshake's box.

    ws_derp_client.py URL --key PRIVHEX --peer PUBHEX [--ca FILE] [--server-name NAME]

Connects with the "derp" subprotocol, does the DERP handshake, sends three
packets to PEER framed three ways (a message holding two DERP frames, a DERP
frame split over two messages, a fragmented message), pings at the WebSocket
level, receives three packets from PEER and checks them, then closes with
1000 and checks that the server answered the Close with 1000. Prints "ok"
and exits 0, or says what went wrong and exits 1.
"""
import argparse
import asyncio
import json
import os
import ssl
import struct
import sys

import websockets
from nacl.public import Box, PrivateKey, PublicKey

MAGIC = b"DERP\xf0\x9f\x94\x91"
SIZES = [10, 1280, 60000]
SERVER_KEY, CLIENT_INFO, SERVER_INFO, SEND_PACKET, RECV_PACKET, NOTE_PREFERRED = 1, 2, 3, 4, 5, 7


def frame(kind, body):
    return bytes([kind]) + struct.pack(">I", len(body)) + body


def payload(tag, i, size):
    """The same bytes websocket_test.cc makes: a label, then a pattern."""
    head = b"%s:%d:" % (tag, i)
    return head + bytes((k * 7 + i) % 256 for k in range(size - len(head)))


class Frames:
    """DERP frames out of the byte stream the binary messages carry."""

    def __init__(self, ws):
        self.ws = ws
        self.buf = b""

    async def next(self):
        while True:
            if len(self.buf) >= 5:
                n = struct.unpack(">I", self.buf[1:5])[0]
                if len(self.buf) >= 5 + n:
                    kind, body = self.buf[0], self.buf[5:5 + n]
                    self.buf = self.buf[5 + n:]
                    return kind, body
            msg = await self.ws.recv()
            if not isinstance(msg, bytes):
                raise RuntimeError("the server sent a text message")
            self.buf += msg


async def run(args):
    key = PrivateKey(bytes.fromhex(args.key))
    peer = bytes.fromhex(args.peer)
    context = None
    if args.url.startswith("wss:"):
        context = ssl.create_default_context(cafile=args.ca)
    extra = {"server_hostname": args.server_name} if context and args.server_name else {}
    async with websockets.connect(args.url, subprotocols=["derp"], ssl=context,
                                  compression=None, open_timeout=10, **extra) as ws:
        if ws.subprotocol != "derp":
            raise RuntimeError("subprotocol %r, not derp" % ws.subprotocol)
        frames = Frames(ws)
        kind, body = await frames.next()
        if kind != SERVER_KEY or body[:8] != MAGIC or len(body) < 40:
            raise RuntimeError("first frame is not ServerKey: type %d" % kind)
        server = PublicKey(body[8:40])
        box = Box(key, server)
        nonce = os.urandom(24)
        info = json.dumps({"version": 2, "canAckPings": True}).encode()
        sealed = box.encrypt(info, nonce).ciphertext
        await ws.send(frame(CLIENT_INFO, bytes(key.public_key) + nonce + sealed))
        kind, body = await frames.next()
        if kind != SERVER_INFO:
            raise RuntimeError("second frame is not ServerInfo: type %d" % kind)
        json.loads(box.decrypt(body[24:], body[:24]))  # the server proved its key

        out = [frame(SEND_PACKET, peer + payload(b"ws-to-native", i, n))
               for i, n in enumerate(SIZES)]
        await ws.send(frame(NOTE_PREFERRED, b"\x01") + out[0])  # two frames, one message
        await ws.send(out[1][:7])                               # one frame, two messages
        await ws.send(out[1][7:])
        await ws.send([out[2][:100], out[2][100:30000], out[2][30000:]])  # fragmented
        pong = await ws.ping(b"derpd?")
        await asyncio.wait_for(pong, 10)

        got = 0
        while got < len(SIZES):
            kind, body = await asyncio.wait_for(frames.next(), 20)
            if kind != RECV_PACKET:
                continue  # KeepAlive, PeerPresent, ...
            if body[:32] != peer:
                raise RuntimeError("packet from an unexpected key")
            if body[32:] != payload(b"native-to-ws", got, SIZES[got]):
                raise RuntimeError("packet %d differs (%d bytes)" % (got, len(body) - 32))
            got += 1
        await ws.close(code=1000, reason="done")
        if ws.close_rcvd is None or ws.close_rcvd.code != 1000:
            raise RuntimeError("the server did not answer the Close with 1000: %r"
                               % (ws.close_rcvd,))
    print("ok", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--key", required=True)
    p.add_argument("--peer", required=True)
    p.add_argument("--ca")
    p.add_argument("--server-name")
    args = p.parse_args()
    try:
        asyncio.run(asyncio.wait_for(run(args), 40))
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        print("ws_derp_client: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
