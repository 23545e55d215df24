// A DERP client in the browser, as Tailscale's js/wasm client speaks it: the
// DERP byte stream inside binary WebSocket messages on /derp with the "derp"
// subprotocol, the handshake's box from TweetNaCl. The page's query gives
// url (ws:// or wss://), key (the client's private key, hex) and peer (the
// native client's public key, hex). It sends three packets to the peer,
// receives three from it and checks them (the same bytes as
// tests/integration/ws_derp_client.py and websocket_test.cc make), then
// closes with 1000 and checks the server's clean Close. The outcome goes in
// document.title.
'use strict';

const SIZES = [10, 1280, 60000];
const MAGIC = [0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91];

function hex(s) {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function frame(type, body) {
  const head = new Uint8Array(5);
  head[0] = type;
  new DataView(head.buffer).setUint32(1, body.length);
  return concat(head, body);
}

function payload(tag, i, size) {
  const head = new TextEncoder().encode(`${tag}:${i}:`);
  const out = new Uint8Array(Math.max(size, head.length));  // the label may be longer
  out.set(head);
  for (let k = 0; head.length + k < size; k++) out[head.length + k] = (k * 7 + i) % 256;
  return out;
}

function equal(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

// DERP frames out of the messages' byte stream.
class Frames {
  constructor(ws) {
    this.buf = new Uint8Array(0);
    this.wake = null;
    this.closed = null;
    ws.onmessage = (e) => {
      if (!(e.data instanceof ArrayBuffer)) {
        this.closed = 'the server sent a text message';
      } else {
        this.buf = concat(this.buf, new Uint8Array(e.data));
      }
      if (this.wake) this.wake();
    };
    ws.onclose = (e) => {
      this.closed = this.closed || `closed early: ${e.code}`;
      if (this.wake) this.wake();
    };
  }
  async next() {
    for (;;) {
      if (this.buf.length >= 5) {
        const n = new DataView(this.buf.buffer, this.buf.byteOffset).getUint32(1);
        if (this.buf.length >= 5 + n) {
          const f = {type: this.buf[0], body: this.buf.slice(5, 5 + n)};
          this.buf = this.buf.slice(5 + n);
          return f;
        }
      }
      if (this.closed) throw new Error(this.closed);
      await new Promise((resolve) => (this.wake = resolve));
      this.wake = null;
    }
  }
}

async function run(url, secret, peer) {
  const ws = new WebSocket(url, ['derp']);
  ws.binaryType = 'arraybuffer';
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`cannot open ${url}`));
  });
  if (ws.protocol !== 'derp') throw new Error(`subprotocol "${ws.protocol}", not derp`);
  const frames = new Frames(ws);
  let f = await frames.next();
  if (f.type !== 1 || !equal(f.body.slice(0, 8), MAGIC)) throw new Error('no ServerKey first');
  const server = f.body.slice(8, 40);
  const pub = nacl.box.keyPair.fromSecretKey(secret).publicKey;
  const nonce = nacl.randomBytes(24);
  const info = new TextEncoder().encode(JSON.stringify({version: 2, canAckPings: true}));
  const sealed = nacl.box(info, nonce, server, secret);
  ws.send(frame(2, concat(pub, nonce, sealed)));
  f = await frames.next();
  if (f.type !== 3) throw new Error(`ServerInfo expected, got type ${f.type}`);
  if (nacl.box.open(f.body.slice(24), f.body.slice(0, 24), server, secret) === null) {
    throw new Error('ServerInfo does not open with the server\'s key');
  }
  const out = SIZES.map((n, i) => frame(4, concat(peer, payload('ws-to-native', i, n))));
  ws.send(concat(frame(7, new Uint8Array([1])), out[0]));  // two frames, one message
  ws.send(out[1].slice(0, 7));                             // one frame, two messages
  ws.send(out[1].slice(7));
  ws.send(out[2]);
  for (let got = 0; got < SIZES.length;) {
    f = await frames.next();
    if (f.type !== 5) continue;  // KeepAlive, ...
    if (!equal(f.body.slice(0, 32), peer)) throw new Error('packet from an unexpected key');
    if (!equal(f.body.slice(32), payload('native-to-ws', got, SIZES[got]))) {
      throw new Error(`packet ${got} differs`);
    }
    got++;
  }
  const closed = new Promise((resolve) => (ws.onclose = resolve));
  ws.close(1000, 'done');
  const e = await closed;
  if (!e.wasClean || e.code !== 1000) throw new Error(`close not clean: ${e.code}`);
}

window.addEventListener('load', () => {
  const q = new URLSearchParams(location.search);
  run(q.get('url'), hex(q.get('key')), hex(q.get('peer')))
      .then(() => (document.title = 'ok'))
      .catch((err) => (document.title = `fail: ${err.message}`));
});
