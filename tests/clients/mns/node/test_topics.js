'use strict';
// Real-client conformance for qgate's Aliyun MNS topics, driven through the official Node SDK
// @alicloud/mns 1.2.0 (`new MNS(accountId, {endpoint, accessKeyId, accessKeySecret})`).
//
// Environment:
//   QGATE_BASE     http://host:port (no trailing slash, no path)
//   QGATE_AK/SK    an access key pair of tenant A
//   QGATE_OTHER_AK/QGATE_OTHER_SK   a second tenant's pair (default other-ak / other-sk)
//
// Output: one line per check, `PASS <name>` or `FAIL <name>: <reason>`; exit status 1 if any failed.
//
// What the SDK can do with topics (lib/client.js): createTopic, getTopicAttributes,
// setTopicAttributes, listTopic and publishMessage are real. deleteTopic, subscribe,
// unsubscribe, listSubscriptionByTopic, get/setSubscriptionAttributes and httpEndpoint are empty
// stubs (`deleteTopic() {}`): they send nothing. So this suite creates its one subscription and
// deletes its topics with requests it signs itself (`signed()` below, the documented MNS rule:
// base64(HMAC-SHA1(secret, VERB\nContent-MD5\nContent-Type\nDate\n{x-mns-* sorted}{resource}))),
// and checks a Node publish arriving through that subscription with the SDK's receiveMessage.
// Like for queues, bodies are put into the XML unescaped; listTopic drops NextMarker, and
// listTopic(start, limit) without a prefix throws client-side (x-mns-prefix: undefined).
const crypto = require('crypto');
const http = require('http');
const MNS = require('@alicloud/mns');

const BASE = (process.env.QGATE_BASE || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const AK = process.env.QGATE_AK || 'demo-ak';
const SK = process.env.QGATE_SK || 'demo-sk';
const OTHER_AK = process.env.QGATE_OTHER_AK || 'other-ak';
const OTHER_SK = process.env.QGATE_OTHER_SK || 'other-sk';
const RUN = crypto.randomBytes(4).toString('hex').slice(0, 6);
const PFX = `nodetop-${RUN}`;

const client = mk(AK, SK);
const other = mk(OTHER_AK, OTHER_SK);
const createdTopics = [];
const createdQueues = [];
let failed = 0;

function mk(ak, sk) {
  return new MNS('qgate-test', {endpoint: BASE, accessKeyId: ak, accessKeySecret: sk});
}

class Fail extends Error {}

function expect(cond, msg) {
  if (!cond) throw new Fail(msg);
}

function report(name, ok, why) {
  if (ok) {
    process.stdout.write(`PASS ${name}\n`);
  } else {
    failed++;
    process.stdout.write(`FAIL ${name}: ${String(why).split(/\s+/).join(' ').slice(0, 600)}\n`);
  }
}

const CHECKS = [];
function check(name, fn) {
  CHECKS.push([name, fn]);
}

const tname = (s) => `${PFX}-${s}`;
const md5Upper = (s) => crypto.createHash('md5').update(Buffer.from(s, 'utf8')).digest('hex').toUpperCase();
const xmlEscape = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const j = (v) => JSON.stringify(v);

function asList(v) {
  if (v === undefined || v === null || v === '') return [];
  return Array.isArray(v) ? v : [v];
}

function mnsCode(e) {
  const m = /^MNS(.*)Error$/.exec(e && e.name || '');
  return m ? m[1] : null;
}

function mnsStatus(e) {
  const m = /failed with (\d+)\./.exec(e && e.message || '');
  return m ? Number(m[1]) : null;
}

// Runs an SDK call that must fail with a server error; returns {code, status, err}.
async function serverError(fn) {
  let res;
  try {
    res = await fn();
  } catch (e) {
    const code = mnsCode(e);
    if (code === null) throw new Fail(`expected a server error, got ${e.name}: ${e.message}`);
    return {code, status: mnsStatus(e), err: e};
  }
  throw new Fail(`expected a server error, the call succeeded (HTTP ${res && res.code}; ` +
    'an error is only raised when the response is text/xml with an <Error> root)');
}

function expectCode(r, ...codes) {
  expect(codes.includes(r.code), `error code ${r.code}, expected ${codes.join(' or ')} (${r.err.message})`);
}

async function mktopic(suffix, params = {}) {
  const name = tname(suffix);
  createdTopics.push(name);
  await client.createTopic(name, params);
  return name;
}

async function mkq(suffix) {
  const name = tname(suffix);
  createdQueues.push(name);
  await client.createQueue(name, {VisibilityTimeout: 30, MaximumMessageSize: 65536, MessageRetentionPeriod: 345600,
    DelaySeconds: 0, PollingWaitSeconds: 0});
  return name;
}

// A request the SDK cannot make, signed independently by the documented rule.
function signed(method, resource, body = '', ak = AK, sk = SK) {
  const url = new URL(BASE + resource);
  const date = new Date().toUTCString();
  const headers = {'date': date, 'x-mns-version': '2015-06-06'};
  let md5 = '';
  let type = '';
  const data = Buffer.from(body, 'utf8');
  if (body) {
    md5 = Buffer.from(crypto.createHash('md5').update(data).digest('hex')).toString('base64');
    type = 'text/xml;charset=utf-8';
    Object.assign(headers, {'content-md5': md5, 'content-type': type});
  }
  headers['content-length'] = data.length;
  const canon = Object.keys(headers).filter((k) => k.startsWith('x-mns-')).sort().map((k) => `${k}:${headers[k]}\n`).join('');
  const toSign = `${method}\n${md5}\n${type}\n${date}\n${canon}${resource}`;
  headers['authorization'] = `MNS ${ak}:${crypto.createHmac('sha1', sk).update(toSign, 'utf8').digest('base64')}`;
  return new Promise((resolve, reject) => {
    const req = http.request({hostname: url.hostname, port: url.port, path: resource, method, headers, timeout: 30000}, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8')}));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(data);
  });
}

function errorCode(body) {
  const m = /<Code>([^<]*)<\/Code>/.exec(body || '');
  return m ? m[1] : null;
}

const XMLNS = 'xmlns="http://mns.aliyuncs.com/doc/v1/"';

async function rawSubscribe(topic, sub, endpoint, format) {
  const body = `<?xml version="1.0" encoding="utf-8"?><Subscription ${XMLNS}><Endpoint>${endpoint}</Endpoint>` +
    `<NotifyContentFormat>${format}</NotifyContentFormat></Subscription>`;
  const r = await signed('PUT', `/topics/${topic}/subscriptions/${sub}`, body);
  expect(r.status === 201, `raw Subscribe: ${r.status} ${r.body.slice(0, 300)}`);
}

const TOPIC_FIELDS = ['TopicName', 'CreateTime', 'LastModifyTime', 'MaximumMessageSize', 'MessageRetentionPeriod',
  'MessageCount', 'LoggingEnabled'];

// ---------------------------------------------------------------------------------------------

check('create_topic/new_201_location', async () => {
  const name = tname('t1');
  createdTopics.push(name);
  const res = await client.createTopic(name, {MaximumMessageSize: 1024, LoggingEnabled: true}); // lower-case true
  expect(res.code === 201, `status ${res.code}, expected 201`);
  expect(res.headers.location === `${BASE}/topics/${name}`, `Location ${res.headers.location}`);
});

check('create_topic/identical_204', async () => {
  const res = await client.createTopic(tname('t1'), {MaximumMessageSize: 1024, LoggingEnabled: true});
  expect(res.code === 204, `status ${res.code}, expected 204`);
  expect(res.headers.location === `${BASE}/topics/${tname('t1')}`, `Location ${res.headers.location}`);
});

check('create_topic/different_409_topic_already_exist', async () => {
  const r = await serverError(() => client.createTopic(tname('t1'), {MaximumMessageSize: 4096}));
  expectCode(r, 'TopicAlreadyExist');
  expect(r.status === 409, `status ${r.status}`);
});

check('get_topic_attributes/all_7_fields', async () => {
  const t0 = Math.floor(Date.now() / 1000);
  const res = await client.getTopicAttributes(tname('t1'));
  expect(res.code === 200, `status ${res.code}`);
  const b = res.body || {};
  const missing = TOPIC_FIELDS.filter((k) => b[k] === undefined);
  expect(missing.length === 0, `missing ${missing.join(', ')} in ${j(b)}`);
  expect(b.TopicName === tname('t1'), `TopicName ${b.TopicName}`);
  expect(b.MaximumMessageSize === '1024' && b.MessageRetentionPeriod === '86400' && b.MessageCount === '0',
    `attributes ${j(b)}`);
  expect(String(b.LoggingEnabled).toLowerCase() === 'true', `LoggingEnabled ${b.LoggingEnabled} (sent as lower-case true)`);
  expect(Math.abs(Number(b.CreateTime) - t0) < 300, `CreateTime ${b.CreateTime} is not epoch seconds`);
});

check('get_topic_attributes/defaults_for_empty_topic_element', async () => {
  const name = await mktopic('tdef'); // <Topic xmlns="..."></Topic>
  const b = (await client.getTopicAttributes(name)).body;
  expect(b.MaximumMessageSize === '65536' && String(b.LoggingEnabled).toLowerCase() === 'false', `attributes ${j(b)}`);
});

check('set_topic_attributes/204', async () => {
  const res = await client.setTopicAttributes(tname('t1'), {MaximumMessageSize: 2048, LoggingEnabled: false});
  expect(res.code === 204, `status ${res.code}, expected 204`);
  const b = (await client.getTopicAttributes(tname('t1'))).body;
  expect(b.MaximumMessageSize === '2048' && String(b.LoggingEnabled).toLowerCase() === 'false', `after set: ${j(b)}`);
  await client.setTopicAttributes(tname('t1'), {LoggingEnabled: 'TRUE'});
  const c = (await client.getTopicAttributes(tname('t1'))).body;
  expect(c.MaximumMessageSize === '2048' && String(c.LoggingEnabled).toLowerCase() === 'true', `partial set: ${j(c)}`);
});

check('set_topic_attributes/out_of_range_invalid_argument', async () => {
  const r = await serverError(() => client.setTopicAttributes(tname('t1'), {MaximumMessageSize: 65537}));
  expectCode(r, 'InvalidArgument');
  expect(r.status === 400, `status ${r.status}`);
});

check('get_topic_attributes/missing_topic_404', async () => {
  const r = await serverError(() => client.getTopicAttributes(tname('nosuch')));
  expectCode(r, 'TopicNotExist');
  expect(r.status === 404, `status ${r.status}`);
  const s = await serverError(() => client.setTopicAttributes(tname('nosuch'), {MaximumMessageSize: 2048}));
  expectCode(s, 'TopicNotExist');
});

check('list_topic/prefix_and_limit', async () => {
  for (const s of ['ls-a', 'ls-b', 'ls-c']) await mktopic(s);
  const want = ['ls-a', 'ls-b', 'ls-c'].map((s) => `${BASE}/topics/${tname(s)}`);
  let got = asList((await client.listTopic(undefined, 1000, tname('ls-'))).body).map((x) => x.TopicURL);
  expect(j(got) === j(want), `all: ${j(got)}`);
  got = asList((await client.listTopic(undefined, 2, tname('ls-'))).body).map((x) => x.TopicURL);
  expect(j(got) === j(want.slice(0, 2)), `limit 2: ${j(got)}`);
  got = asList((await client.listTopic('', 1000, tname('ls-'))).body).map((x) => x.TopicURL); // empty x-mns-marker
  expect(j(got) === j(want), `empty marker: ${j(got)}`);
  got = asList((await client.listTopic(undefined, 10, tname('nothing-here'))).body);
  expect(got.length === 0, `no match: ${j(got)}`);
});

check('publish_message/201_id_and_md5', async () => {
  const body = 'Node publish & <xml/> 中文';
  const res = await client.publishMessage(tname('t1'), {MessageBody: xmlEscape(body), MessageTag: 'tagA'});
  expect(res.code === 201, `status ${res.code}, expected 201`);
  expect(res.body && res.body.MessageId, `no MessageId: ${j(res.body)}`);
  expect(res.body.MessageBodyMD5 === md5Upper(body), `MessageBodyMD5 ${res.body.MessageBodyMD5}, expected ${md5Upper(body)}`);
});

check('publish_message/missing_topic_404', async () => {
  const r = await serverError(() => client.publishMessage(tname('nosuch'), {MessageBody: 'x'}));
  expectCode(r, 'TopicNotExist');
  expect(r.status === 404, `status ${r.status}`);
});

check('publish_message/unescaped_ampersand_refused_cleanly', async () => {
  const r = await serverError(() => client.publishMessage(tname('t1'), {MessageBody: 'fish & chips'}));
  expectCode(r, 'MalformedXML', 'InvalidArgument');
  expect(r.status === 400, `status ${r.status}`);
});

check('publish_message/tag_over_16_characters_invalid_argument', async () => {
  // The Node SDK does not check the tag length; the server must.
  const r = await serverError(() => client.publishMessage(tname('t1'), {MessageBody: 'x', MessageTag: 'a'.repeat(17)}));
  expectCode(r, 'InvalidArgument');
  const ok = await client.publishMessage(tname('t1'), {MessageBody: 'x', MessageTag: 'a'.repeat(16)});
  expect(ok.code === 201, `16-character tag: status ${ok.code}`);
});

check('publish_message/body_over_maximum_message_size_invalid_argument', async () => {
  const name = await mktopic('small', {MaximumMessageSize: 1024});
  const ok = await client.publishMessage(name, {MessageBody: 'a'.repeat(1024)});
  expect(ok.code === 201, `1024 bytes: status ${ok.code}`);
  const r = await serverError(() => client.publishMessage(name, {MessageBody: 'a'.repeat(1025)}));
  expectCode(r, 'InvalidArgument');
});

check('publish_message/reaches_subscribed_queues', async () => {
  const topic = await mktopic('fan');
  const qs = await mkq('qs');
  const qx = await mkq('qx');
  await rawSubscribe(topic, 'simple', `acs:mns:cn-qgate:1234567890:queues/${qs}`, 'SIMPLIFIED');
  await rawSubscribe(topic, 'xml', `acs:mns:cn-qgate:1234567890:queues/${qx}`, 'XML');
  const body = 'to <every> queue & 中文';
  const pub = (await client.publishMessage(topic, {MessageBody: xmlEscape(body), MessageTag: 'n1'})).body;
  const m = (await client.receiveMessage(qs, 3)).body;
  expect(m.MessageBody === body, `SIMPLIFIED queue got ${j(m.MessageBody)}, expected ${j(body)}`);
  expect(m.MessageBodyMD5 === pub.MessageBodyMD5, `MD5 ${m.MessageBodyMD5} vs publish ${pub.MessageBodyMD5}`);
  await client.deleteMessage(qs, m.ReceiptHandle);
  const x = (await client.receiveMessage(qx, 3)).body;
  const doc = String(x.MessageBody);
  for (const [k, v] of [['TopicName', topic], ['SubscriptionName', 'xml'], ['MessageId', pub.MessageId],
    ['Message', xmlEscape(body)], ['MessageTag', 'n1']]) {
    expect(doc.includes(`<${k}>${v}</${k}>`), `XML notification lacks <${k}>${v}</${k}>: ${doc.slice(0, 500)}`);
  }
  await client.deleteMessage(qx, x.ReceiptHandle);
});

check('tenant/topics_isolated', async () => {
  const r = await serverError(() => other.getTopicAttributes(tname('t1')));
  expectCode(r, 'TopicNotExist');
  const got = asList((await other.listTopic(undefined, 1000, PFX)).body);
  expect(got.length === 0, `the other tenant lists ${j(got)}`);
});

check('delete_topic/sdk_stub_sends_nothing_raw_delete_204', async () => {
  const name = await mktopic('del');
  const stub = client.deleteTopic(name);
  expect(stub === undefined, `deleteTopic returned ${j(stub)}; expected the 1.2.0 stub`);
  await client.getTopicAttributes(name); // still there
  const r = await signed('DELETE', `/topics/${name}`);
  expect(r.status === 204, `raw DeleteTopic: ${r.status} ${r.body.slice(0, 300)}`);
  const e = await serverError(() => client.getTopicAttributes(name));
  expectCode(e, 'TopicNotExist');
  const again = await signed('DELETE', `/topics/${name}`);
  expect(again.status === 404 && errorCode(again.body) === 'TopicNotExist', `second delete: ${again.status} ${again.body.slice(0, 300)}`);
});

check('cleanup/delete_every_topic_and_queue_of_this_run', async () => {
  const problems = [];
  for (const name of createdTopics.reverse()) {
    try {
      const r = await signed('DELETE', `/topics/${name}`);
      if (r.status !== 204 && errorCode(r.body) !== 'TopicNotExist') problems.push(`topic ${name}: ${r.status}`);
    } catch (e) {
      problems.push(`topic ${name}: ${e.message}`);
    }
  }
  for (const name of createdQueues.reverse()) {
    try {
      await client.deleteQueue(name);
    } catch (e) {
      if (mnsCode(e) !== 'QueueNotExist') problems.push(`queue ${name}: ${e.name}`);
    }
  }
  expect(problems.length === 0, problems.join('; '));
  const left = asList((await client.listTopic(undefined, 1000, PFX)).body)
    .concat(asList((await client.listQueue(undefined, 1000, PFX)).body));
  expect(left.length === 0, `left: ${j(left)}`);
});

async function main() {
  for (const [name, fn] of CHECKS) {
    try {
      await fn();
      report(name, true);
    } catch (e) {
      report(name, false, e instanceof Fail ? e.message : `${e.name}: ${e.message}`);
    }
  }
  process.exit(failed ? 1 : 0);
}

main();
