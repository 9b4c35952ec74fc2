'use strict';
// Cross-SDK helper for tests/clients/mns/python/test_mns.py: does one thing with the official
// Node SDK (@alicloud/mns 1.2.0) and prints the response body as JSON on stdout.
//
//   node xsdk.js send <queue> <body>     sendMessage; the body goes raw (XML-escaped here, because
//                                        the SDK does not escape it); prints {MessageId, MessageBodyMD5}
//   node xsdk.js receive <queue> [wait]  receiveMessage; prints the <Message> fields; deletes nothing
//
// Environment: QGATE_BASE, QGATE_AK, QGATE_SK (as for the suites).
const MNS = require('@alicloud/mns');

function xmlEscape(s) {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

async function main() {
  const [cmd, queue, arg] = process.argv.slice(2);
  const client = new MNS('qgate', {
    endpoint: process.env.QGATE_BASE || 'http://127.0.0.1:8080',
    accessKeyId: process.env.QGATE_AK || 'demo-ak',
    accessKeySecret: process.env.QGATE_SK || 'demo-sk',
  });
  let res;
  if (cmd === 'send') {
    res = await client.sendMessage(queue, {MessageBody: xmlEscape(arg)});
  } else if (cmd === 'receive') {
    res = await client.receiveMessage(queue, arg ? Number(arg) : undefined);
  } else {
    throw new Error(`unknown command ${cmd}`);
  }
  if (!res.body) {
    throw new Error(`HTTP ${res.code} without a parsed XML body`);
  }
  process.stdout.write(JSON.stringify(res.body) + '\n');
}

main().catch((e) => {
  process.stderr.write(`${e.name}: ${e.message}\n`);
  process.exit(1);
});
