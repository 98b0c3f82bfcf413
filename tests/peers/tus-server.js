// The official Node tus server (@tus/server + @tus/file-store, versions pinned in package.json),
// started by tests/test_tus_peers.py on 127.0.0.1 as a real third-party peer for tmpup's tus client.
//
//   node tus-server.js PORT DIRECTORY [--relative-location] [--max-size BYTES]
//
// Serves tus 1.0.0 at http://127.0.0.1:PORT/files/ and prints "listening on URL" once it accepts
// connections (the fixture waits for that line). Exits on SIGTERM.
'use strict';

const { Server } = require('@tus/server');
const { FileStore } = require('@tus/file-store');

const args = process.argv.slice(2);
const port = Number(args[0]);
const directory = args[1];
if (!Number.isInteger(port) || port < 0 || !directory) {
  console.error('usage: node tus-server.js PORT DIRECTORY [--relative-location] [--max-size BYTES]');
  process.exit(2);
}
const sizeAt = args.indexOf('--max-size');

const server = new Server({
  path: '/files',
  datastore: new FileStore({ directory }),
  relativeLocation: args.includes('--relative-location'),
  maxSize: sizeAt >= 0 ? Number(args[sizeAt + 1]) : undefined,
});

const listener = server.listen({ host: '127.0.0.1', port }, () => {
  const address = listener.address();
  console.log(`listening on http://127.0.0.1:${address.port}/files/`);
});

process.on('SIGTERM', () => listener.close(() => process.exit(0)));
