'use strict';
// The relay `herald bench channels` compares Herald with: the usual Node.js design for live
// session logs and screenshots. Publishers POST to this process, which PUBLISHes the payload to
// Redis; every relay process PSUBSCRIBEs to Redis and emits what it hears to the socket.io room
// of the channel, where the viewers of that session sit. One process is run here; more behind a
// load balancer would share the same Redis.
//
//   node relay.js [PORT] [REDIS_URL]        (or PORT / REDIS_URL in the environment)
//
//   POST /channels/:channel/messages        raw body of any type, up to 128 MiB: one message
//   POST /channels/:channel/messages/batch  {"messages":[{"data":"text"},
//                                            {"data":"<base64>","encoding":"base64"}]}
//   socket.io (websocket transport) on the same port: join a channel's room with
//   ?channel=NAME in the handshake query, or emit('join', NAME, ack).
//   Every message arrives as a `message` event: a string when it is UTF-8 text, otherwise a
//   Buffer (a socket.io binary attachment).
//
// With RELAY_API_KEY set, publishing needs `Authorization: Bearer <RELAY_API_KEY>`.

const http = require('node:http');
const { isUtf8 } = require('node:buffer');
const { Server } = require('socket.io');
const Redis = require('ioredis');

const PORT = Number(process.argv[2] || process.env.PORT || 3000);
const REDIS_URL = process.argv[3] || process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const API_KEY = process.env.RELAY_API_KEY || '';
const PREFIX = 'relay:';
// The same limits Herald has: 128 MiB for one message, 1000 messages in a batch request.
const MAX_MESSAGE_BYTES = 128 * 1024 * 1024;
const MAX_BATCH_MESSAGES = 1000;
// A batch of 1000 messages of 256 KiB in base64, and the JSON around it.
const MAX_BATCH_BYTES = 1000 * 350 * 1024;
const CHANNEL = /^[A-Za-z0-9._:@-]{1,200}$/;

// One connection publishes, one subscribes: a subscribed Redis connection can do nothing else.
const pub = new Redis(REDIS_URL, { lazyConnect: false });
const sub = new Redis(REDIS_URL, { lazyConnect: false });
for (const [name, client] of [['publisher', pub], ['subscriber', sub]]) {
  client.on('error', (e) => console.error(`redis ${name}: ${e.message}`));
}

const server = http.createServer(handle);
const io = new Server(server, {
  // Viewers are browsers of today: WebSocket only, no long-polling fallback and no upgrade dance.
  transports: ['websocket'],
  // Limits what a client may send (it sends nothing but `join`); sending to clients is unbounded.
  maxHttpBufferSize: 1e6,
  perMessageDeflate: false,
  serveClient: false,
});

io.on('connection', (socket) => {
  const channel = socket.handshake.query.channel;
  if (typeof channel === 'string' && CHANNEL.test(channel)) {
    socket.join(channel);
  }
  socket.on('join', (name, ack) => {
    if (typeof name === 'string' && CHANNEL.test(name)) {
      socket.join(name);
      if (typeof ack === 'function') ack({ ok: true });
    } else if (typeof ack === 'function') {
      ack({ ok: false, error: 'bad channel name' });
    }
  });
});

// The Buffer variant of the event keeps binary payloads intact (the string one would mangle them).
sub.on('pmessageBuffer', (_pattern, redisChannel, message) => {
  const channel = redisChannel.toString('utf8').slice(PREFIX.length);
  // Text goes out as a text frame, anything else as one binary attachment.
  const payload = isUtf8(message) ? message.toString('utf8') : message;
  io.to(channel).emit('message', payload);
});

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

// Reads a request body into one Buffer, refusing it past `limit` bytes.
function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > limit) {
      reject(Object.assign(new Error(`body larger than ${limit} bytes`), { status: 413 }));
      return;
    }
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > limit) {
        reject(Object.assign(new Error(`body larger than ${limit} bytes`), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)));
    req.on('error', reject);
  });
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://relay');
  if (req.method === 'GET' && url.pathname === '/healthz') {
    reply(res, 200, { ok: true });
    return;
  }
  const route = /^\/channels\/([^/]+)\/messages(\/batch)?$/.exec(url.pathname);
  if (!route) {
    reply(res, 404, { error: 'not found' });
    return;
  }
  if (req.method !== 'POST') {
    reply(res, 405, { error: 'use POST' });
    return;
  }
  if (API_KEY && req.headers.authorization !== `Bearer ${API_KEY}`) {
    reply(res, 401, { error: 'bad or missing API key' });
    return;
  }
  const channel = decodeURIComponent(route[1]);
  if (!CHANNEL.test(channel)) {
    reply(res, 400, { error: 'bad channel name' });
    return;
  }
  const batch = Boolean(route[2]);
  try {
    const body = await readBody(req, batch ? MAX_BATCH_BYTES : MAX_MESSAGE_BYTES);
    if (!batch) {
      await pub.publish(PREFIX + channel, body);
      reply(res, 202, { channel, bytes: body.length });
      return;
    }
    let parsed;
    try {
      parsed = JSON.parse(body);
    } catch (e) {
      reply(res, 400, { error: `bad JSON: ${e.message}` });
      return;
    }
    const messages = parsed && parsed.messages;
    if (!Array.isArray(messages) || messages.length === 0 || messages.length > MAX_BATCH_MESSAGES) {
      reply(res, 400, { error: `messages must be an array of 1 to ${MAX_BATCH_MESSAGES}` });
      return;
    }
    // One round trip to Redis for the whole batch.
    const pipeline = pub.pipeline();
    let bytes = 0;
    for (const m of messages) {
      if (!m || typeof m.data !== 'string') {
        reply(res, 400, { error: 'every message needs a string `data`' });
        return;
      }
      const data = m.encoding === 'base64' ? Buffer.from(m.data, 'base64') : m.data;
      bytes += typeof data === 'string' ? Buffer.byteLength(data) : data.length;
      pipeline.publish(PREFIX + channel, data);
    }
    const results = await pipeline.exec();
    const failed = results.find(([err]) => err);
    if (failed) throw failed[0];
    reply(res, 202, { channel, count: messages.length, bytes });
  } catch (e) {
    if (!res.headersSent) {
      reply(res, e.status || 500, { error: e.message });
    }
  }
}

sub.psubscribe(`${PREFIX}*`).then(
  () => {
    server.listen(PORT, '127.0.0.1', () => {
      console.log(`relay listening on 127.0.0.1:${PORT}, redis ${REDIS_URL}`);
    });
  },
  (e) => {
    console.error(`cannot subscribe: ${e.message}`);
    process.exit(1);
  },
);

function shutdown() {
  io.close();
  server.close();
  pub.disconnect();
  sub.disconnect();
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
