// ws-broadcast.js - the Node.js peer of the fan-out benchmark: a room broadcast server on the `ws` package (version 8), written the plain way.
//
// Rooms: a WebSocket to /sub/<room> subscribes; every frame received on a
// WebSocket to /pub/<room> is sent on, unchanged (text stays text, binary
// stays binary), to each subscriber of <room>.
// `ws` is not part of the repository: bench/run.py installs it with npm into
// a scratch folder (BENCH_NODE_DIR) and points NODE_PATH at it. By hand:
//   npm install --prefix /tmp/ws-peer ws@8
//   NODE_PATH=/tmp/ws-peer/node_modules node ws-broadcast.js [PORT]   (default 8092)
'use strict';

const { WebSocketServer } = require('ws');

const port = Number.parseInt(process.argv[2] || '8092', 10);
const subscribers = new Map(); // room -> Set of sockets

function join(room, socket) {
  let set = subscribers.get(room);
  if (!set) {
    set = new Set();
    subscribers.set(room, set);
  }
  set.add(socket);
  socket.on('close', () => {
    set.delete(socket);
    if (set.size === 0 && subscribers.get(room) === set) subscribers.delete(room);
  });
}

function publisher(room, socket) {
  socket.on('message', (data, isBinary) => {
    const set = subscribers.get(room);
    if (!set) return;
    for (const sub of set) sub.send(data, { binary: isBinary });
  });
}

const server = new WebSocketServer({
  host: '127.0.0.1',
  port,
  backlog: 65535,
  perMessageDeflate: false,
});

server.on('connection', (socket, request) => {
  const m = /^\/(pub|sub)\/([A-Za-z0-9_]+)$/.exec(request.url || '');
  if (!m) {
    socket.close(1008, 'use /sub/<room> or /pub/<room>');
    return;
  }
  if (m[1] === 'sub') join(m[2], socket);
  else publisher(m[2], socket);
});

server.on('listening', () => console.log(`ws-broadcast on 127.0.0.1:${port}`));
server.on('error', (err) => {
  console.error(`ws-broadcast: ${err.message}`);
  process.exit(1);
});
