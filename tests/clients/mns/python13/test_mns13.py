#!/usr/bin/env python3
"""Real-client conformance for qgate's Aliyun MNS topics, subscriptions, account attributes and
the queue-message features new in the official Python SDK `aliyun-mns-sdk` 1.3.0 (`import mns`):
user/system properties and MessageGroupId. It also checks topic notifications pushed to a local
HTTP endpoint (signature verified independently with `cryptography`), and the `b64` tenant
(`mns_body_encoding = "base64"`) where the SDK's default base64 bodies interoperate with infrai.

Environment:
  QGATE_BASE                  http://host:port (no trailing slash, no path)
  QGATE_AK/QGATE_SK           an access key pair of tenant A (raw MNS bodies)
  QGATE_OTHER_AK/QGATE_OTHER_SK   a second tenant (default other-ak / other-sk)
  QGATE_B64_AK/QGATE_B64_SK/QGATE_B64_BEARER   a tenant with mns_body_encoding = "base64"
                              (default b64-ak / b64-sk / ifr_b64)
  The HTTP-endpoint checks need the server to allow pushes to 127.0.0.1
  (`[push] allow_targets = ["127.0.0.1"]`).

Output: one line per check, `PASS <name>` or `FAIL <name>: <reason>`; exit status 1 if any failed.

aliyun-mns-sdk 1.3.0 and aliyun-mns 1.1.5 both install the `mns` package, so this suite needs its
own virtualenv (scripts/conformance uses tests/clients/.venv-mns13). The SDK can print debug output
on stdout, so this script points sys.stdout at /dev/null and writes its own lines to the real one.
"""
import base64
import hashlib
import json
import os
import random
import string
import sys
import threading
import time
import urllib.error
import urllib.request
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.dom.minidom import parseString

OUT = sys.stdout
sys.stdout = open(os.devnull, "w")  # the SDK's debug output goes to stdout

failed = 0


def report(name, ok, why=""):
    global failed
    if ok:
        line = "PASS " + name
    else:
        failed += 1
        line = "FAIL %s: %s" % (name, " ".join(str(why).split())[:700])
    OUT.write(line + "\n")
    OUT.flush()


try:
    from mns.account import Account, AccountMeta
    from mns.mns_common import TopicHelper
    from mns.mns_exception import MNSClientNetworkException, MNSExceptionBase, MNSServerException
    from mns.message_property import MessagePropertyValue, MessageSystemPropertyValue
    from mns.queue import Message, QueueMeta
    from mns.subscription import SubscriptionMeta, SubscriptionNotifyContentFormat as Fmt, SubscriptionNotifyStrategy as Strat
    from mns.topic import Base64TopicMessage, TopicMessage, TopicMeta
    from mns.mns_request import (
        CreateTopicRequest,
        CreateTopicResponse,
        DeleteTopicRequest,
        DeleteTopicResponse,
        GetTopicAttributesRequest,
        GetTopicAttributesResponse,
        ListTopicRequest,
        ListTopicResponse,
        PublishMessageRequest,
        PublishMessageResponse,
        SetAccountAttributesRequest,
        SetAccountAttributesResponse,
        SetSubscriptionAttributesRequest,
        SetSubscriptionAttributesResponse,
        SetTopicAttributesRequest,
        SetTopicAttributesResponse,
        SubscribeRequest,
        SubscribeResponse,
        UnsubscribeRequest,
        UnsubscribeResponse,
    )
    from mns.pkg_info import version as SDK_VERSION
except Exception as e:  # the SDK is not installed
    report("import aliyun-mns-sdk 1.3.0", False, repr(e))
    sys.exit(1)
if SDK_VERSION != "1.3.0":
    report("import aliyun-mns-sdk 1.3.0", False, "the mns package is %s %s" % (SDK_VERSION, os.path.dirname(Account.__module__)))
    sys.exit(1)

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
except Exception as e:
    report("import cryptography", False, repr(e))
    sys.exit(1)

BASE = os.environ.get("QGATE_BASE", "http://127.0.0.1:8080").rstrip("/")
AK = os.environ.get("QGATE_AK", "demo-ak")
SK = os.environ.get("QGATE_SK", "demo-sk")
OTHER_AK = os.environ.get("QGATE_OTHER_AK", "other-ak")
OTHER_SK = os.environ.get("QGATE_OTHER_SK", "other-sk")
B64_AK = os.environ.get("QGATE_B64_AK", "b64-ak")
B64_SK = os.environ.get("QGATE_B64_SK", "b64-sk")
B64_BEARER = os.environ.get("QGATE_B64_BEARER", "ifr_b64")
RUN = "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(6))
PFX = "py13-" + RUN  # every topic and queue of this run starts with it
REGION = "cn-qgate"
ACCOUNT_DIGITS = "1234567890123"  # any digits: the queue endpoint is in the caller's tenant

acc = Account(BASE, AK, SK)
other = Account(BASE, OTHER_AK, OTHER_SK)
b64acc = Account(BASE, B64_AK, B64_SK)
created_topics = []  # (account, topic name)
created_queues = []  # (account, queue name)


class Fail(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise Fail(msg)


CHECKS = []


def check(name):
    def deco(fn):
        CHECKS.append((name, fn))
        return fn

    return deco


def describe(e):
    if isinstance(e, MNSClientNetworkException) and e.type == "RespDataDamaged":
        return "SDK could not decode the response (RespDataDamaged): %s" % str(e.message)[:400]
    if isinstance(e, MNSExceptionBase):
        return "%s %s: %s" % (type(e).__name__, e.type, str(e.message)[:400])
    return "%s: %s" % (type(e).__name__, e)


# ---------------------------------------------------------------------------------------------
# helpers

def name(suffix):
    return "%s-%s" % (PFX, suffix)


def mktopic(suffix, account=None, meta=None):
    account = account or acc
    t = account.get_topic(name(suffix))
    created_topics.append((account, name(suffix)))
    t.create(meta or TopicMeta())
    return t


def mkq(suffix, account=None):
    account = account or acc
    q = account.get_queue(name(suffix))
    created_queues.append((account, name(suffix)))
    q.create(QueueMeta(vis_timeout=30, max_msg_size=65536, msg_ttl=345600, delay_sec=0, polling_wait_sec=0))
    return q


def queue_endpoint(suffix):
    return TopicHelper.generate_queue_endpoint(REGION, ACCOUNT_DIGITS, name(suffix))


def server_error(fn, *args, **kwargs):
    """Runs an SDK call that must fail with a server error; returns the MNSServerException."""
    try:
        fn(*args, **kwargs)
    except MNSServerException as e:
        return e
    except MNSExceptionBase as e:
        raise Fail("expected a server error, got " + describe(e))
    raise Fail("expected a server error, the call succeeded")


def expect_code(e, *codes):
    expect(e.type in codes, "error code %r, expected %s (message %r)" % (e.type, " or ".join(codes), e.message))


def low(account, op, req, resp):
    """Calls the SDK's MNSClient directly, to see the HTTP status and headers."""
    try:
        getattr(account.get_client(), op)(req, resp)
        return resp, None
    except MNSServerException as e:
        return resp, e


def md5_upper(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.md5(data).hexdigest().upper()


def b64(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def now_ms():
    return int(time.time() * 1000)


def receive_raw(q, wait=3):
    """Receives one message without base64 decoding and deletes it; returns the Message."""
    q.set_encoding(False)
    m = q.receive_message(wait)
    q.delete_message(m.receipt_handle)
    return m


def drain_raw(q, wait=1):
    """Every message now in the queue (raw bodies), deleted."""
    q.set_encoding(False)
    got = []
    while True:
        try:
            m = q.receive_message(wait)
        except MNSServerException as e:
            if e.type == "MessageNotExist":
                return got
            raise
        q.delete_message(m.receipt_handle)
        got.append(m)
        wait = 0


def xml_fields(text, root):
    try:
        d = parseString(text.encode("utf-8") if isinstance(text, str) else text)
    except Exception as e:
        raise Fail("not XML (%s): %r" % (e, text[:300]))
    nodes = d.getElementsByTagName(root)
    expect(nodes, "no <%s> element in %r" % (root, text[:300]))
    out = {}
    for n in nodes[0].childNodes:
        if n.nodeType == n.ELEMENT_NODE:
            out[n.nodeName] = "".join(c.data for c in n.childNodes if c.nodeType in (c.TEXT_NODE, c.CDATA_SECTION_NODE))
    return out


def infrai(path, body, bearer=B64_BEARER):
    req = urllib.request.Request(BASE + path, data=json.dumps(body).encode("utf-8"), method="POST",
                                 headers={"Authorization": "Bearer " + bearer, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def prop_view(props):
    """{name: (type, raw value)} of a received message's properties."""
    return {k: (v.get_data_type(), v.get_raw_value()) for k, v in props.items()}


# ---------------------------------------------------------------------------------------------
# a local HTTP endpoint for topic notifications

class Receiver:
    def __init__(self):
        self.cond = threading.Condition()
        self.requests = []  # dicts: path, headers (raw (name, value) pairs), body, t, status
        self.replies = {}  # path -> list of statuses for the next requests (then 204)
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with rec.cond:
                    queue = rec.replies.get(self.path.split("?")[0], [])
                    status = queue.pop(0) if queue else 204
                    rec.requests.append({"path": self.path, "headers": list(self.headers.items()), "body": body,
                                         "t": time.monotonic(), "status": status})
                    rec.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.server.server_address[1], path)

    def reply(self, path, statuses):
        with self.cond:
            self.replies[path] = list(statuses)

    def wait_for(self, path, count=1, timeout=10.0):
        """The requests to `path` (without query) once there are `count` of them (or at timeout)."""
        def hits():
            return [r for r in self.requests if r["path"].split("?")[0] == path]

        with self.cond:
            self.cond.wait_for(lambda: len(hits()) >= count, timeout)
            return hits()


RECEIVER = None
CERTS = {}


def receiver():
    global RECEIVER
    if RECEIVER is None:
        RECEIVER = Receiver()
    return RECEIVER


def hdr(r, key):
    for k, v in r["headers"]:
        if k.lower() == key.lower():
            return v
    return None


def verify_push(r):
    """Verifies an MNS push the documented way: RSA-SHA1 (PKCS#1 v1.5) over
    POST\\n{Content-MD5}\\n{Content-Type}\\n{Date}\\n{x-mns-* name:value\\n, sorted}{path?query},
    with the public key of the certificate at base64-decoded x-mns-signing-cert-url."""
    auth = hdr(r, "Authorization")
    expect(auth, "no Authorization header")
    cert_hdr = hdr(r, "x-mns-signing-cert-url")
    expect(cert_hdr, "no x-mns-signing-cert-url header")
    cert_url = base64.b64decode(cert_hdr).decode("utf-8")
    expect(cert_url.startswith(("http://", "https://")), "x-mns-signing-cert-url decodes to %r" % cert_url)
    if cert_url not in CERTS:
        with urllib.request.urlopen(cert_url, timeout=10) as resp:
            CERTS[cert_url] = x509.load_pem_x509_certificate(resp.read())
    cert = CERTS[cert_url]
    mns = sorted((k.lower(), v.strip()) for k, v in r["headers"] if k.lower().startswith("x-mns-"))
    sts = "POST\n%s\n%s\n%s\n%s%s" % (hdr(r, "Content-MD5") or "", hdr(r, "Content-Type") or "", hdr(r, "Date") or "",
                                      "".join("%s:%s\n" % kv for kv in mns), r["path"])
    try:
        cert.public_key().verify(base64.b64decode(auth), sts.encode("utf-8"), padding.PKCS1v15(), hashes.SHA1())
    except Exception as e:
        raise Fail("signature does not verify (%s: %s) over %r" % (type(e).__name__, e, sts))
    return cert_url


def check_push_common(r, msg_id, topic, sub, tag=None):
    """The headers every push carries, its signature and its Content-MD5."""
    verify_push(r)
    lower_names = [k for k, _v in r["headers"] if k.lower().startswith("x-mns-")]
    expect(all(k == k.lower() for k in lower_names), "x-mns-* header names not lower case: %r" % lower_names)
    want = {"x-mns-message-id": msg_id, "x-mns-topic-name": topic, "x-mns-subscription-name": sub,
            "x-mns-version": "2015-06-06"}
    for k, v in want.items():
        expect(hdr(r, k) == v, "%s: %r, expected %r" % (k, hdr(r, k), v))
    if tag is not None:
        expect(hdr(r, "x-mns-message-tag") == tag, "x-mns-message-tag %r, expected %r" % (hdr(r, "x-mns-message-tag"), tag))
    for k in ("x-mns-request-id", "x-mns-subscriber", "x-mns-topic-owner", "x-mns-publish-time"):
        expect(hdr(r, k), "no %s header" % k)
    pt = int(hdr(r, "x-mns-publish-time"))
    expect(abs(pt - now_ms()) < 120000, "x-mns-publish-time %s is not epoch ms near now" % pt)
    cmd5 = hdr(r, "Content-MD5") or ""
    hexmd5 = hashlib.md5(r["body"]).hexdigest()
    try:
        decoded = base64.b64decode(cmd5).decode("ascii")
    except Exception:
        decoded = ""
    expect(decoded.lower() == hexmd5 or cmd5.lower() == hexmd5,
           "Content-MD5 %r matches neither base64(hex md5) nor hex md5 of the body (%s)" % (cmd5, hexmd5))
    date = parsedate_to_datetime(hdr(r, "Date")).timestamp()
    expect(abs(date - time.time()) < 900, "Date %r is more than 15 minutes off" % hdr(r, "Date"))


# ---------------------------------------------------------------------------------------------
# HTTP endpoint, part 1: a push that fails once (its retry is checked near the end, so the
# 10-20 s BACKOFF_RETRY wait overlaps the other checks)

RETRY = {}


@check("notify_http/failed_push_is_pending_in_message_count")
def _():
    rcv = receiver()
    rcv.reply("/retry", [500])
    t = mktopic("hretry")
    sub = t.get_subscription("s-retry")
    sub.subscribe(SubscriptionMeta(rcv.url("/retry"), Strat.BACKOFF, Fmt.SIMPLIFIED))
    r = t.publish_message(TopicMessage("retry me", "rt"))
    RETRY["id"] = r.message_id
    hits = rcv.wait_for("/retry", 1, 10)
    expect(hits, "no push to the HTTP endpoint within 10 s of PublishMessage")
    RETRY["first"] = hits[0]["t"]
    expect(hits[0]["status"] == 500, "the first push was answered %s" % hits[0]["status"])
    check_push_common(hits[0], r.message_id, name("hretry"), "s-retry", "rt")
    time.sleep(0.3)
    mc = t.get_attributes().message_count
    expect(mc == 1, "MessageCount %s after a failed push, expected 1 (the notification waiting for its retry)" % mc)


# ---------------------------------------------------------------------------------------------
# topics

@check("topic/create_new_201_location")
def _():
    n = name("t1")
    created_topics.append((acc, n))
    resp, e = low(acc, "create_topic", CreateTopicRequest(n, 1024, True), CreateTopicResponse())
    expect(e is None, "create failed: " + (describe(e) if e else ""))
    expect(resp.status == 201, "status %s, expected 201" % resp.status)
    want = "%s/topics/%s" % (BASE, n)
    expect(resp.topic_url == want, "Location %r, expected %r" % (resp.topic_url, want))
    expect(resp.get_requestid(), "no lower-case x-mns-request-id header (1.3.0 reads headers case-sensitively): %r"
           % sorted(resp.header))


@check("topic/create_identical_204")
def _():
    n = name("t1")
    resp, e = low(acc, "create_topic", CreateTopicRequest(n, 1024, True), CreateTopicResponse())
    expect(e is None, "identical create failed: " + (describe(e) if e else ""))
    expect(resp.status == 204, "status %s, expected 204" % resp.status)
    url = acc.get_topic(n).create(TopicMeta(1024, True))
    expect(url == "%s/topics/%s" % (BASE, n), "Topic.create returned %r" % url)


@check("topic/create_different_409_topic_already_exist")
def _():
    n = name("t1")
    resp, e = low(acc, "create_topic", CreateTopicRequest(n, 2048, True), CreateTopicResponse())
    expect(e is not None, "create with a different MaximumMessageSize succeeded (status %s)" % resp.status)
    expect_code(e, "TopicAlreadyExist")
    expect(resp.status == 409, "status %s, expected 409" % resp.status)
    expect(acc.get_topic(n).get_attributes().maximum_message_size == 1024, "the refused create changed the topic")


@check("topic/get_attributes_all_7_fields")
def _():
    t0 = int(time.time())
    m = acc.get_topic(name("t1")).get_attributes()
    expect(m.topic_name == name("t1"), "TopicName %r" % m.topic_name)
    got = (m.maximum_message_size, m.logging_enabled, m.message_retention_period, m.message_count)
    expect(got == (1024, True, 86400, 0), "(MaximumMessageSize, LoggingEnabled, MessageRetentionPeriod, MessageCount) = %r, "
           "expected (1024, True, 86400, 0)" % (got,))
    expect(abs(m.create_time - t0) < 300, "CreateTime %s is not epoch seconds near %s" % (m.create_time, t0))
    expect(m.create_time <= m.last_modify_time < t0 + 300, "LastModifyTime %s vs CreateTime %s" % (m.last_modify_time, m.create_time))


@check("topic/default_attributes")
def _():
    t = mktopic("tdef")
    m = t.get_attributes()
    got = (m.maximum_message_size, m.logging_enabled, m.message_retention_period, m.message_count)
    expect(got == (65536, False, 86400, 0), "attributes %r, expected (65536, False, 86400, 0)" % (got,))


@check("topic/set_attributes_204")
def _():
    n = name("t1")
    before = acc.get_topic(n).get_attributes()
    time.sleep(1.05)
    resp, e = low(acc, "set_topic_attributes", SetTopicAttributesRequest(n, 2048, False), SetTopicAttributesResponse())
    expect(e is None, "set failed: " + (describe(e) if e else ""))
    expect(resp.status == 204, "status %s, expected 204" % resp.status)
    m = acc.get_topic(n).get_attributes()
    expect((m.maximum_message_size, m.logging_enabled) == (2048, False), "after set: %r" % ((m.maximum_message_size, m.logging_enabled),))
    expect(m.create_time == before.create_time, "CreateTime changed")
    expect(m.last_modify_time > before.last_modify_time, "LastModifyTime %s not after %s" % (m.last_modify_time, before.last_modify_time))
    acc.get_topic(n).set_attributes(TopicMeta(logging_enabled=True))  # only <LoggingEnabled>
    m = acc.get_topic(n).get_attributes()
    expect((m.maximum_message_size, m.logging_enabled) == (2048, True), "partial set: %r" % ((m.maximum_message_size, m.logging_enabled),))


@check("topic/out_of_range_maximum_message_size_invalid_argument")
def _():
    created_topics.append((acc, name("tbad")))
    e = server_error(acc.get_topic(name("tbad")).create, TopicMeta(maximum_message_size=65537))
    expect_code(e, "InvalidArgument")
    e = server_error(acc.get_topic(name("t1")).set_attributes, TopicMeta(maximum_message_size=1023))
    expect_code(e, "InvalidArgument")
    expect(acc.get_topic(name("t1")).get_attributes().maximum_message_size == 2048, "the refused set changed the topic")


@check("topic/list_prefix_paging_next_marker")
def _():
    for s in ("pg-a", "pg-b", "pg-c"):
        mktopic(s)
    pfx = name("pg-")
    urls1, m1 = acc.list_topic(pfx, 2)
    want = ["%s/topics/%s" % (BASE, name(s)) for s in ("pg-a", "pg-b", "pg-c")]
    expect(len(urls1) == 2 and m1, "first page %r, NextMarker %r" % (urls1, m1))
    urls2, m2 = acc.list_topic(pfx, 2, m1)
    expect(m2 == "", "NextMarker %r on the last page (expected none)" % m2)
    expect(urls1 + urls2 == want, "pages %r + %r, expected %r" % (urls1, urls2, want))
    urls, m = acc.list_topic(pfx)
    expect(urls == want and m == "", "unpaged %r %r" % (urls, m))
    urls, m = acc.list_topic(name("nothing-here"))
    expect(urls == [] and m == "", "empty prefix: %r %r" % (urls, m))


@check("topic/list_with_meta")
def _():
    # Account.list_topic always sends x-mns-with-meta: true but returns only the URLs; the
    # SDK's ListTopicResponse keeps the meta.
    resp, e = low(acc, "list_topic", ListTopicRequest(name("pg-"), -1, "", True), ListTopicResponse())
    expect(e is None, describe(e) if e else "")
    metas = resp.topicmeta_list
    expect([m.get("TopicName") for m in metas] == [name(s) for s in ("pg-a", "pg-b", "pg-c")], "meta %r" % metas)
    for m in metas:
        for k, v in (("MaximumMessageSize", "65536"), ("MessageRetentionPeriod", "86400"), ("MessageCount", "0")):
            expect(m.get(k) == v, "%s: %s %r, expected %r (meta %r)" % (m.get("TopicName"), k, m.get(k), v, m))
        expect(m.get("LoggingEnabled", "").lower() == "false", "%s: LoggingEnabled %r" % (m.get("TopicName"), m.get("LoggingEnabled")))
        expect(m.get("CreateTime", "").isdigit() and m.get("LastModifyTime", "").isdigit(), "%s: times %r" % (m.get("TopicName"), m))


@check("topic/missing_topic_404_topic_not_exist")
def _():
    t = acc.get_topic(name("nosuch"))
    resp, e = low(acc, "get_topic_attributes", GetTopicAttributesRequest(name("nosuch")), GetTopicAttributesResponse())
    expect(e is not None, "GetTopicAttributes on a missing topic: status %s" % resp.status)
    expect_code(e, "TopicNotExist")
    expect(resp.status == 404, "status %s, expected 404" % resp.status)
    expect(e.request_id and e.host_id, "error without RequestId/HostId")
    for what, fn, args in (("set_attributes", t.set_attributes, (TopicMeta(2048),)),
                           ("publish_message", t.publish_message, (TopicMessage("x"),)),
                           ("list_subscription", t.list_subscription, ()),
                           ("subscribe", t.get_subscription("s").subscribe, (SubscriptionMeta(queue_endpoint("q")),)),
                           ("delete", t.delete, ())):
        e = server_error(fn, *args)
        expect(e.type == "TopicNotExist", "%s on a missing topic: %s" % (what, e.type))
    resp, e = low(acc, "delete_topic", DeleteTopicRequest(name("nosuch")), DeleteTopicResponse())
    expect(e is not None and resp.status == 404, "DeleteTopic on a missing topic: status %s" % resp.status)


@check("topic/publish_201_id_and_md5")
def _():
    n = name("t1")
    body = "hello <world> & 中文"
    resp, e = low(acc, "publish_message", PublishMessageRequest(n, body, "tagA", None, None, ""), PublishMessageResponse())
    expect(e is None, "publish failed: " + (describe(e) if e else ""))
    expect(resp.status == 201, "status %s, expected 201" % resp.status)
    expect(resp.message_id, "no MessageId")
    expect(resp.message_body_md5 == md5_upper(body), "MessageBodyMD5 %r, expected %r" % (resp.message_body_md5, md5_upper(body)))
    r = acc.get_topic(n).publish_message(Base64TopicMessage(body))
    expect(r.message_body_md5 == md5_upper(b64(body)), "Base64TopicMessage MD5 %r, expected the MD5 of the base64 text" % r.message_body_md5)


@check("topic/publish_with_group_id_and_properties_accepted")
def _():
    m = TopicMessage("props", "tagP", message_group_id="grp-1")
    m.add_user_property("s", MessagePropertyValue.create_string("text"))
    m.add_user_property("n", MessagePropertyValue.create_number(3.5))
    m.add_user_property("b", MessagePropertyValue.create_boolean(True))
    m.add_user_property("bin", MessagePropertyValue.create_binary(b"\x00\x01\xfe"))
    m.add_system_property("traceparent", MessageSystemPropertyValue.create_string("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
    r = acc.get_topic(name("t1")).publish_message(m)
    expect(r.message_id and r.message_body_md5 == md5_upper("props"), "answer %r %r" % (r.message_id, r.message_body_md5))


@check("topic/publish_body_over_maximum_message_size_invalid_argument")
def _():
    t = mktopic("tsmall", meta=TopicMeta(maximum_message_size=1024))
    r = t.publish_message(TopicMessage("a" * 1024))
    expect(r.message_id, "1024 bytes refused")
    e = server_error(t.publish_message, TopicMessage("a" * 1025))
    expect_code(e, "InvalidArgument")


@check("topic/debug_mode_reads_lower_case_request_id")
def _():
    t = acc.get_topic(name("t1"))
    t.set_debug(True)  # Topic.debuginfo does resp.header["x-mns-request-id"] on a case-sensitive dict
    try:
        t.get_attributes()
        t.publish_message(TopicMessage("debug"))
        t.list_subscription()
    finally:
        t.set_debug(False)
    s = acc.get_topic(name("t1")).get_subscription("nosuch")
    e = server_error(s.get_attributes)
    expect(e.request_id, "error without a request id")


@check("topic/delete_204_then_topic_not_exist")
def _():
    t = mktopic("tdel")
    t.get_subscription("s").subscribe(SubscriptionMeta(queue_endpoint("qdel")))
    resp, e = low(acc, "delete_topic", DeleteTopicRequest(name("tdel")), DeleteTopicResponse())
    expect(e is None, "delete failed: " + (describe(e) if e else ""))
    expect(resp.status == 204, "status %s, expected 204" % resp.status)
    e = server_error(t.get_attributes)
    expect_code(e, "TopicNotExist")
    e = server_error(t.get_subscription("s").get_attributes)
    expect(e.type in ("TopicNotExist", "SubscriptionNotExist"), "subscription of a deleted topic: %s" % e.type)
    t.create(TopicMeta())
    subs, _m = t.list_subscription()
    expect(subs == [], "a re-created topic still has subscriptions: %r" % subs)


# ---------------------------------------------------------------------------------------------
# subscriptions

@check("subscription/subscribe_201_location")
def _():
    mktopic("ts")
    mkq("qs")
    resp, e = low(acc, "subscribe", SubscribeRequest(name("ts"), "s1", queue_endpoint("qs"), "", "", "tag1"), SubscribeResponse())
    expect(e is None, "subscribe failed: " + (describe(e) if e else ""))
    expect(resp.status == 201, "status %s, expected 201" % resp.status)
    want = "%s/topics/%s/subscriptions/s1" % (BASE, name("ts"))
    expect(resp.subscription_url == want, "Location %r, expected %r" % (resp.subscription_url, want))


@check("subscription/subscribe_identical_204")
def _():
    resp, e = low(acc, "subscribe", SubscribeRequest(name("ts"), "s1", queue_endpoint("qs"), "", "", "tag1"), SubscribeResponse())
    expect(e is None, "identical subscribe failed: " + (describe(e) if e else ""))
    expect(resp.status == 204, "status %s, expected 204" % resp.status)
    url = acc.get_topic(name("ts")).get_subscription("s1").subscribe(
        SubscriptionMeta(queue_endpoint("qs"), Strat.BACKOFF, Fmt.XML, "tag1"))  # the defaults spelled out
    expect(url.endswith("/subscriptions/s1"), "Subscription.subscribe returned %r" % url)


@check("subscription/subscribe_different_409_subscription_already_exist")
def _():
    resp, e = low(acc, "subscribe", SubscribeRequest(name("ts"), "s1", queue_endpoint("qs"), "", "JSON", "tag1"), SubscribeResponse())
    expect(e is not None, "subscribe with a different NotifyContentFormat succeeded (status %s)" % resp.status)
    expect_code(e, "SubscriptionAlreadyExist")
    expect(resp.status == 409, "status %s, expected 409" % resp.status)
    e = server_error(acc.get_topic(name("ts")).get_subscription("s1").subscribe, SubscriptionMeta(queue_endpoint("other")))
    expect_code(e, "SubscriptionAlreadyExist")
    m = acc.get_topic(name("ts")).get_subscription("s1").get_attributes()
    expect((m.endpoint, m.notify_content_format) == (queue_endpoint("qs"), "XML"), "the refused subscribe changed it: %r" %
           ((m.endpoint, m.notify_content_format),))


@check("subscription/get_attributes_all_fields")
def _():
    t0 = int(time.time())
    m = acc.get_topic(name("ts")).get_subscription("s1").get_attributes()
    got = (m.topic_name, m.subscription_name, m.endpoint, m.notify_strategy, m.notify_content_format, m.filter_tag)
    want = (name("ts"), "s1", queue_endpoint("qs"), "BACKOFF_RETRY", "XML", "tag1")
    expect(got == want, "%r, expected %r" % (got, want))
    expect(m.topic_owner and m.topic_owner.isdigit(), "TopicOwner %r is not an account id" % m.topic_owner)
    expect(abs(m.create_time - t0) < 300, "CreateTime %s is not epoch seconds near %s" % (m.create_time, t0))
    expect(m.create_time <= m.last_modify_time < t0 + 300, "LastModifyTime %s" % m.last_modify_time)


@check("subscription/set_attributes_notify_strategy_204")
def _():
    before = acc.get_topic(name("ts")).get_subscription("s1").get_attributes()
    time.sleep(1.05)
    resp, e = low(acc, "set_subscription_attributes",
                  SetSubscriptionAttributesRequest(name("ts"), "s1", "", Strat.EXPONENTIAL), SetSubscriptionAttributesResponse())
    expect(e is None, "set failed: " + (describe(e) if e else ""))
    expect(resp.status == 204, "status %s, expected 204" % resp.status)
    m = acc.get_topic(name("ts")).get_subscription("s1").get_attributes()
    expect(m.notify_strategy == "EXPONENTIAL_DECAY_RETRY", "NotifyStrategy %r" % m.notify_strategy)
    expect((m.endpoint, m.notify_content_format, m.filter_tag) == (before.endpoint, before.notify_content_format, before.filter_tag),
           "other attributes changed: %r" % ((m.endpoint, m.notify_content_format, m.filter_tag),))
    expect(m.create_time == before.create_time and m.last_modify_time > before.last_modify_time,
           "times %s/%s -> %s/%s" % (before.create_time, before.last_modify_time, m.create_time, m.last_modify_time))
    acc.get_topic(name("ts")).get_subscription("s1").set_attributes(SubscriptionMeta(notify_strategy=Strat.BACKOFF))
    m = acc.get_topic(name("ts")).get_subscription("s1").get_attributes()
    expect(m.notify_strategy == "BACKOFF_RETRY", "back to BACKOFF_RETRY: %r" % m.notify_strategy)


@check("subscription/list_prefix_paging_next_marker")
def _():
    t = acc.get_topic(name("ts"))
    for s in ("p-a", "p-b", "p-c"):
        t.get_subscription(s).subscribe(SubscriptionMeta(queue_endpoint("qs")))
    want = ["%s/topics/%s/subscriptions/%s" % (BASE, name("ts"), s) for s in ("p-a", "p-b", "p-c")]
    urls1, m1 = t.list_subscription("p-", 2)
    expect(len(urls1) == 2 and m1, "first page %r, NextMarker %r" % (urls1, m1))
    urls2, m2 = t.list_subscription("p-", 2, m1)
    expect(m2 == "", "NextMarker %r on the last page (expected none)" % m2)
    expect(urls1 + urls2 == want, "pages %r + %r, expected %r" % (urls1, urls2, want))
    urls, m = t.list_subscription()
    expect(urls == want + ["%s/topics/%s/subscriptions/s1" % (BASE, name("ts"))] and m == "", "all (in name order): %r %r" % (urls, m))


@check("subscription/missing_404_subscription_not_exist")
def _():
    s = acc.get_topic(name("ts")).get_subscription("nosuch")
    for what, fn, args in (("get_attributes", s.get_attributes, ()),
                           ("set_attributes", s.set_attributes, (SubscriptionMeta(notify_strategy=Strat.BACKOFF),))):
        e = server_error(fn, *args)
        expect(e.type == "SubscriptionNotExist", "%s: %s" % (what, e.type))
    resp, e = low(acc, "unsubscribe", UnsubscribeRequest(name("ts"), "nosuch"), UnsubscribeResponse())
    expect(e is not None and e.type == "SubscriptionNotExist", "Unsubscribe of a missing subscription: %s"
           % (e.type if e else "status %s" % resp.status))
    expect(resp.status == 404, "status %s, expected 404" % resp.status)


@check("subscription/unsubscribe_204_then_not_exist")
def _():
    resp, e = low(acc, "unsubscribe", UnsubscribeRequest(name("ts"), "p-c"), UnsubscribeResponse())
    expect(e is None, "unsubscribe failed: " + (describe(e) if e else ""))
    expect(resp.status == 204, "status %s, expected 204" % resp.status)
    e = server_error(acc.get_topic(name("ts")).get_subscription("p-c").get_attributes)
    expect_code(e, "SubscriptionNotExist")
    urls, _m = acc.get_topic(name("ts")).list_subscription("p-")
    expect([u.rsplit("/", 1)[1] for u in urls] == ["p-a", "p-b"], "after unsubscribe: %r" % urls)


@check("subscription/mail_and_sms_endpoints_invalid_argument")
def _():
    t = acc.get_topic(name("ts"))
    for ep in (TopicHelper.generate_mail_endpoint("someone@example.com"), TopicHelper.generate_sms_endpoint(),
               TopicHelper.generate_sms_endpoint("13800000000")):
        e = server_error(t.get_subscription("mail").subscribe, SubscriptionMeta(ep, notify_content_format=Fmt.SIMPLIFIED))
        expect(e.type == "InvalidArgument", "endpoint %r: %s" % (ep, e.type))


@check("subscription/unknown_strategy_and_format_invalid_argument")
def _():
    t = acc.get_topic(name("ts"))
    e = server_error(t.get_subscription("bad1").subscribe, SubscriptionMeta(queue_endpoint("qs"), "SOMETIMES_RETRY"))
    expect(e.type == "InvalidArgument", "NotifyStrategy SOMETIMES_RETRY: %s" % e.type)
    e = server_error(t.get_subscription("bad2").subscribe, SubscriptionMeta(queue_endpoint("qs"), "", "YAML"))
    expect(e.type == "InvalidArgument", "NotifyContentFormat YAML: %s" % e.type)


# ---------------------------------------------------------------------------------------------
# queue endpoints: the three formats, FilterTag, fan-out

def fmt_topic():
    """A topic with three queue subscriptions (XML, JSON, SIMPLIFIED), published to once."""
    if "fmt" not in FMT:
        t = mktopic("tq")
        for f in ("xml", "json", "simple"):
            mkq("q" + f)
        t.get_subscription("sx").subscribe(SubscriptionMeta(queue_endpoint("qxml")))  # XML by default
        t.get_subscription("sj").subscribe(SubscriptionMeta(queue_endpoint("qjson"), Strat.EXPONENTIAL, Fmt.JSON))
        t.get_subscription("ss").subscribe(SubscriptionMeta(queue_endpoint("qsimple"), "", Fmt.SIMPLIFIED))
        owner = t.get_subscription("sx").get_attributes().topic_owner
        body = 'fan <out> & "q" 中文'
        t0 = now_ms()
        r = t.publish_message(TopicMessage(body, "blue"))
        FMT["fmt"] = (r, body, owner, t0, now_ms())
    return FMT["fmt"]


FMT = {}


@check("notify_queue/xml_notification_document")
def _():
    r, body, owner, t0, t1 = fmt_topic()
    m = receive_raw(acc.get_queue(name("qxml")))
    f = xml_fields(m.message_body, "Notification")
    want = {"TopicOwner": owner, "TopicName": name("tq"), "Subscriber": owner, "SubscriptionName": "sx",
            "MessageId": r.message_id, "Message": body, "MessageMD5": md5_upper(body), "MessageTag": "blue"}
    for k, v in want.items():
        expect(f.get(k) == v, "<%s> %r, expected %r (document %r)" % (k, f.get(k), v, m.message_body[:500]))
    expect(t0 - 1000 <= int(f.get("PublishTime", "0")) <= t1 + 1000, "PublishTime %r is not the publish time in ms" % f.get("PublishTime"))
    expect(m.message_body_md5 == md5_upper(m.message_body), "queue message MD5 %r is not the MD5 of the document" % m.message_body_md5)


@check("notify_queue/json_notification_object")
def _():
    r, body, owner, t0, t1 = fmt_topic()
    m = receive_raw(acc.get_queue(name("qjson")))
    try:
        f = json.loads(m.message_body)
    except ValueError:
        raise Fail("not JSON: %r" % m.message_body[:300])
    want = {"TopicOwner": owner, "TopicName": name("tq"), "Subscriber": owner, "SubscriptionName": "sj",
            "MessageId": r.message_id, "Message": body, "MessageMD5": md5_upper(body), "MessageTag": "blue"}
    for k, v in want.items():
        expect(f.get(k) == v, "%s %r, expected %r (object %r)" % (k, f.get(k), v, m.message_body[:500]))
    pt = f.get("PublishTime")
    expect(isinstance(pt, str) and t0 - 1000 <= int(pt) <= t1 + 1000, "PublishTime %r: expected a string of epoch ms" % (pt,))


@check("notify_queue/simplified_raw_body")
def _():
    r, body, _owner, _t0, _t1 = fmt_topic()
    m = receive_raw(acc.get_queue(name("qsimple")))
    expect(m.message_body == body, "body %r, expected %r" % (m.message_body, body))
    expect(m.message_body_md5 == r.message_body_md5, "MD5 %r, publish said %r" % (m.message_body_md5, r.message_body_md5))


@check("notify_queue/untagged_xml_and_json")
def _():
    t = acc.get_topic(name("tq"))
    fmt_topic()
    t.publish_message(TopicMessage("no tag"))
    f = xml_fields(receive_raw(acc.get_queue(name("qxml"))).message_body, "Notification")
    expect(f.get("Message") == "no tag" and f.get("MessageTag", "") == "", "XML: %r" % f)
    j = json.loads(receive_raw(acc.get_queue(name("qjson"))).message_body)
    expect(j.get("Message") == "no tag" and j.get("MessageTag", "") == "", "JSON: %r" % j)
    m = receive_raw(acc.get_queue(name("qsimple")))
    expect(m.message_body == "no tag", "SIMPLIFIED: %r" % m.message_body)


@check("notify_queue/filter_tag")
def _():
    t = mktopic("tf")
    qf, qa = mkq("qf"), mkq("qa")
    t.get_subscription("red").subscribe(SubscriptionMeta(queue_endpoint("qf"), "", Fmt.SIMPLIFIED, "red"))
    t.get_subscription("all").subscribe(SubscriptionMeta(queue_endpoint("qa"), "", Fmt.SIMPLIFIED))
    t.publish_message(TopicMessage("is blue", "blue"))
    t.publish_message(TopicMessage("no tag"))
    t.publish_message(TopicMessage("is red", "red"))
    got_f = [m.message_body for m in drain_raw(qf)]
    got_a = sorted(m.message_body for m in drain_raw(qa))
    expect(got_f == ["is red"], "FilterTag=red subscription got %r" % got_f)
    expect(got_a == ["is blue", "is red", "no tag"], "unfiltered subscription got %r" % got_a)


@check("notify_queue/base64_topic_message_decoded_by_default_receive")
def _():
    t = mktopic("tb")
    q = mkq("qb")
    t.get_subscription("s").subscribe(SubscriptionMeta(queue_endpoint("qb"), "", Fmt.SIMPLIFIED))
    body = "Base64TopicMessage → queue 中文"
    t.publish_message(Base64TopicMessage(body))
    q.set_encoding(True)  # the SDK default
    m = q.receive_message(3)
    expect(m.message_body == body.encode("utf-8"), "default receive gave %r" % m.message_body)
    q.delete_message(m.receipt_handle)


@check("notify_queue/endpoint_is_in_callers_tenant")
def _():
    t = mktopic("tten")
    q = mkq("qten")
    oq = mkq("qten", account=other)  # same name in the other tenant
    t.get_subscription("s").subscribe(SubscriptionMeta(queue_endpoint("qten"), "", Fmt.SIMPLIFIED))
    t.publish_message(TopicMessage("mine"))
    expect([m.message_body for m in drain_raw(q)] == ["mine"], "caller's queue did not get the notification")
    leaked = drain_raw(oq, 0)
    expect(leaked == [], "the other tenant's queue of the same name got %r" % [m.message_body for m in leaked])


@check("tenant/topics_isolated")
def _():
    e = server_error(other.get_topic(name("t1")).get_attributes)
    expect_code(e, "TopicNotExist")
    e = server_error(other.get_topic(name("t1")).publish_message, TopicMessage("x"))
    expect_code(e, "TopicNotExist")
    urls, _m = other.list_topic(PFX)
    expect(urls == [], "the other tenant lists %r" % urls)


# ---------------------------------------------------------------------------------------------
# HTTP endpoint, part 2: one push per format, signature verified

def http_push(fmt, path, reply, tag):
    rcv = receiver()
    rcv.reply(path.split("?")[0], [reply])
    t = mktopic("h" + fmt.lower())
    sname = "s-" + fmt.lower()
    t.get_subscription(sname).subscribe(SubscriptionMeta(rcv.url(path), "", fmt))
    owner = t.get_subscription(sname).get_attributes().topic_owner
    body = 'push %s <&> "q" 中文' % fmt
    t0 = now_ms()
    r = t.publish_message(TopicMessage(body, tag) if tag else TopicMessage(body))
    hits = rcv.wait_for(path.split("?")[0], 1, 10)
    expect(hits, "no push within 10 s of PublishMessage")
    h = hits[0]
    expect(h["path"] == path, "request path %r, expected %r" % (h["path"], path))
    check_push_common(h, r.message_id, name("h" + fmt.lower()), sname, tag)
    expect(hdr(h, "x-mns-subscriber") == owner and hdr(h, "x-mns-topic-owner") == owner,
           "x-mns-subscriber %r / x-mns-topic-owner %r, expected the TopicOwner %r" % (hdr(h, "x-mns-subscriber"), hdr(h, "x-mns-topic-owner"), owner))
    HTTP[fmt] = (path.split("?")[0], r.message_id)
    return h, r, body, owner, t0


HTTP = {}


@check("notify_http/xml_signed_push")
def _():
    h, r, body, owner, t0 = http_push(Fmt.XML, "/notify/xml?run=%s" % RUN, 201, "tx")
    expect((hdr(h, "Content-Type") or "").lower().startswith("text/xml"), "Content-Type %r" % hdr(h, "Content-Type"))
    f = xml_fields(h["body"], "Notification")
    want = {"TopicOwner": owner, "TopicName": name("hxml"), "Subscriber": owner, "SubscriptionName": "s-xml",
            "MessageId": r.message_id, "Message": body, "MessageMD5": md5_upper(body), "MessageTag": "tx"}
    for k, v in want.items():
        expect(f.get(k) == v, "<%s> %r, expected %r" % (k, f.get(k), v))
    expect(abs(int(f.get("PublishTime", "0")) - t0) < 5000, "PublishTime %r" % f.get("PublishTime"))


@check("notify_http/simplified_signed_push")
def _():
    h, r, body, _owner, _t0 = http_push(Fmt.SIMPLIFIED, "/notify/simple", 204, "ts")
    expect(h["body"] == body.encode("utf-8"), "body %r, expected the published text" % h["body"][:300])
    expect((hdr(h, "Content-Type") or "").lower().startswith("text/plain"), "Content-Type %r" % hdr(h, "Content-Type"))


@check("notify_http/json_signed_push")
def _():
    h, r, body, owner, _t0 = http_push(Fmt.JSON, "/notify/json", 200, None)
    try:
        f = json.loads(h["body"])
    except ValueError:
        raise Fail("not JSON: %r" % h["body"][:300])
    want = {"TopicOwner": owner, "TopicName": name("hjson"), "Subscriber": owner, "SubscriptionName": "s-json",
            "MessageId": r.message_id, "Message": body, "MessageMD5": md5_upper(body)}
    for k, v in want.items():
        expect(f.get(k) == v, "%s %r, expected %r" % (k, f.get(k), v))
    expect(f.get("MessageTag", "") == "", "MessageTag %r on an untagged message" % f.get("MessageTag"))
    expect(isinstance(f.get("PublishTime"), str), "PublishTime %r is not a string" % (f.get("PublishTime"),))


@check("notify_http/signing_certificate_served_by_qgate")
def _():
    rcv = receiver()
    hits = rcv.wait_for("/notify/simple", 1, 0)
    expect(hits, "no push recorded")
    url = base64.b64decode(hdr(hits[0], "x-mns-signing-cert-url")).decode()
    expect(url == BASE + "/mns-signing-cert.pem", "certificate URL %r, expected %r" % (url, BASE + "/mns-signing-cert.pem"))
    with urllib.request.urlopen(url, timeout=10) as resp:
        pem = resp.read()
    expect(pem.startswith(b"-----BEGIN CERTIFICATE-----"), "not a PEM certificate: %r" % pem[:80])
    cert = x509.load_pem_x509_certificate(pem)
    expect(cert.public_key().key_size >= 1024, "RSA key of %d bits" % cert.public_key().key_size)


@check("notify_http/topic_message_count_zero_after_delivery")
def _():
    for fmt in (Fmt.XML, Fmt.SIMPLIFIED, Fmt.JSON):
        expect(fmt in HTTP, "the %s push check did not run" % fmt)
    for suffix in ("hxml", "hsimplified", "hjson"):
        deadline = time.monotonic() + 3
        while True:
            mc = acc.get_topic(name(suffix)).get_attributes().message_count
            if mc == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        expect(mc == 0, "topic %s: MessageCount %s after a 2xx delivery" % (name(suffix), mc))


# ---------------------------------------------------------------------------------------------
# account attributes

@check("account/get_attributes_without_bucket_has_empty_logging_bucket")
def _():
    # GetAccountAttrDecoder requires a <LoggingBucket> element, even when no bucket is set;
    # an empty element reads as "". The other tenant has never set one.
    m = other.get_attributes()
    expect(m.logging_bucket == "", "LoggingBucket %r on an account that never set one" % m.logging_bucket)


@check("account/set_and_get_logging_bucket")
def _():
    resp, e = low(acc, "set_account_attributes", SetAccountAttributesRequest("qgate-logs-" + RUN), SetAccountAttributesResponse())
    expect(e is None, "set failed: " + (describe(e) if e else ""))
    expect(resp.status == 204, "status %s, expected 204" % resp.status)
    m = acc.get_attributes()
    expect(m.logging_bucket == "qgate-logs-" + RUN, "LoggingBucket %r" % m.logging_bucket)
    acc.set_attributes(AccountMeta())  # <Account/>: nothing changes
    expect(acc.get_attributes().logging_bucket == "qgate-logs-" + RUN, "an empty <Account> changed the bucket")


@check("account/tenant_isolated")
def _():
    other.set_attributes(AccountMeta("other-logs-" + RUN))
    try:
        expect(acc.get_attributes().logging_bucket == "qgate-logs-" + RUN, "setting the other tenant's bucket changed this one's")
        expect(other.get_attributes().logging_bucket == "other-logs-" + RUN, "the other tenant reads %r" % other.get_attributes().logging_bucket)
    finally:
        other.set_attributes(AccountMeta(""))


@check("account/clear_logging_bucket")
def _():
    acc.set_attributes(AccountMeta(""))  # <LoggingBucket></LoggingBucket> clears it
    m = acc.get_attributes()
    expect(m.logging_bucket == "", "LoggingBucket %r after clearing" % m.logging_bucket)


# ---------------------------------------------------------------------------------------------
# queue messages: properties and MessageGroupId (new in 1.3.0)

USER_PROPS = (
    ("str", MessagePropertyValue.create_string("hello <prop> & 中文"), ("STRING", "hello <prop> & 中文")),
    ("num", MessagePropertyValue.create_number(3.25), ("NUMBER", "3.25")),
    ("int", MessagePropertyValue.create_number(-7), ("NUMBER", "-7")),
    ("yes", MessagePropertyValue.create_boolean(True), ("BOOLEAN", "true")),
    ("no", MessagePropertyValue.create_boolean("FALSE"), ("BOOLEAN", "false")),
    ("bin", MessagePropertyValue.create_binary(b"\x00\x01\xfe\xff"), ("BINARY", b"\x00\x01\xfe\xff")),
)
SYS_PROPS = (
    ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ("tracestate", "congo=t61rcWkgMzE"),
    ("baggage", "userId=alice,isProduction=false"),
)


def props_message(body, group=""):
    m = Message(body, message_group_id=group)
    for n, v, _w in USER_PROPS:
        m.add_user_property(n, v)
    for n, v in SYS_PROPS:
        m.add_system_property(n, MessageSystemPropertyValue.create_string(v))
    return m


def expect_props(m, what):
    got_u = prop_view(m.user_properties)
    want_u = {n: w for n, _v, w in USER_PROPS}
    expect(got_u == want_u, "%s: user properties %r, expected %r" % (what, got_u, want_u))
    got_s = prop_view(m.system_properties)
    want_s = {n: ("STRING", v) for n, v in SYS_PROPS}
    expect(got_s == want_s, "%s: system properties %r, expected %r" % (what, got_s, want_s))


@check("queue_properties/every_type_on_receive")
def _():
    q = mkq("qp")
    sent = q.send_message(props_message("with properties"))
    m = q.receive_message()
    expect(m.message_id == sent.message_id and m.message_body == b"with properties", "got %r" % m.message_body)
    expect_props(m, "receive")
    q.delete_message(m.receipt_handle)


@check("queue_properties/every_type_on_peek")
def _():
    q = acc.get_queue(name("qp"))
    q.send_message(props_message("peek me"))
    m = q.peek_message()
    expect(m.message_body == b"peek me", "got %r" % m.message_body)
    expect_props(m, "peek")
    m = q.batch_peek_message(16)
    expect(len(m) == 1, "batch peek gave %d messages" % len(m))
    expect_props(m[0], "batch peek")


@check("queue_properties/batch_send_and_batch_receive")
def _():
    q = mkq("qpb")
    q.batch_send_message([props_message("b1"), Message("plain"), props_message("b2")])
    got = q.batch_receive_message(16)
    bodies = [g.message_body for g in got]
    expect(bodies == [b"b1", b"plain", b"b2"], "batch received %r" % bodies)
    expect_props(got[0], "batch receive #1")
    expect_props(got[2], "batch receive #3")
    expect(got[1].user_properties == {} and got[1].system_properties == {}, "a message without properties got %r / %r" %
           (prop_view(got[1].user_properties), prop_view(got[1].system_properties)))
    q.batch_delete_message([g.receipt_handle for g in got])


@check("queue_group/message_group_id_round_trip")
def _():
    q = mkq("qg")
    q.send_message(props_message("grouped", group="order-42"))
    m = q.receive_message()
    expect(m.message_group_id == "order-42", "MessageGroupId %r on receive" % m.message_group_id)
    expect_props(m, "grouped receive")
    q.delete_message(m.receipt_handle)
    q.batch_send_message([Message("g-a", message_group_id="ga"), Message("no group")])
    got = q.batch_receive_message(16)
    expect([(g.message_body, g.message_group_id) for g in got] == [(b"g-a", "ga"), (b"no group", "")],
           "batch receive %r" % [(g.message_body, g.message_group_id) for g in got])
    q.batch_delete_message([g.receipt_handle for g in got])


@check("queue_group/ordered_delivery_second_of_group_held_until_first_deleted")
def _():
    q = mkq("qord")
    q.send_message(Message("A1", message_group_id="A"))
    q.send_message(Message("A2", message_group_id="A"))
    q.send_message(Message("B1", message_group_id="B"))
    first = q.receive_message()
    expect(first.message_body == b"A1", "first receive %r" % first.message_body)
    second = q.receive_message()
    expect(second.message_body == b"B1", "while A1 is in flight, receive gave %r (expected B1: A2 must wait for A1)"
           % second.message_body)
    e = server_error(q.receive_message, 0)
    expect(e.type == "MessageNotExist", "third receive: %s" % e.type)
    q.delete_message(first.receipt_handle)
    third = q.receive_message()
    expect(third.message_body == b"A2", "after A1 was deleted: %r" % third.message_body)
    q.delete_message(second.receipt_handle)
    q.delete_message(third.receipt_handle)


# ---------------------------------------------------------------------------------------------
# the b64 tenant (mns_body_encoding = "base64"): MNS Python defaults <-> infrai

@check("b64/topic_simplified_to_queue_default_receive_decodes")
def _():
    t = mktopic("tb64", account=b64acc)
    q = mkq("qb64t", account=b64acc)
    t.get_subscription("s").subscribe(SubscriptionMeta(queue_endpoint("qb64t"), "", Fmt.SIMPLIFIED))
    body = "plain topic text 中文 <&>"
    t.publish_message(TopicMessage(body))  # a topic body is not base64-encoded by the SDK
    m = q.receive_message(3)  # the default: base64-decodes
    expect(m.message_body == body.encode("utf-8"), "default receive gave %r" % m.message_body)
    q.delete_message(m.receipt_handle)


@check("b64/mns_default_send_infrai_consume_plain_text")
def _():
    q = mkq("qb64a", account=b64acc)
    body = "from the MNS SDK: plain text 中文 <&>"
    sent = q.send_message(Message(body))  # the default: the SDK sends base64(body)
    expect(sent.message_body_md5 in (md5_upper(b64(body)), md5_upper(body)), "send MD5 %r" % sent.message_body_md5)
    status, r = infrai("/v1/queue/consume", {"queue": name("qb64a"), "max_messages": 10})
    expect(status == 200, "consume: %s %r" % (status, r))
    msgs = r.get("messages", [])
    expect(len(msgs) == 1, "consume gave %r" % r)
    expect(msgs[0]["payload"] == body, "infrai payload %r, expected the plain text %r" % (msgs[0]["payload"], body))
    expect(msgs[0]["priority"] == 8, "infrai priority %r for an MNS message without Priority, expected 8 (its default)" % msgs[0]["priority"])
    status, r = infrai("/v1/queue/ack", {"queue": name("qb64a"), "message_id": msgs[0]["message_id"]})
    expect(status == 200, "ack: %s %r" % (status, r))


@check("b64/infrai_publish_mns_default_receive_decodes")
def _():
    q = mkq("qb64b", account=b64acc)
    payload = {"order": 42, "note": "from infrai 中文"}
    status, r = infrai("/v1/queue/publish", {"queue": name("qb64b"), "payload": payload})
    expect(status == 201, "publish: %s %r" % (status, r))
    status, r2 = infrai("/v1/queue/publish", {"queue": name("qb64b"), "payload": "just text"})
    expect(status == 201, "publish: %s %r" % (status, r2))
    m = q.receive_message(3)  # the default base64 decoding must not raise binascii.Error
    expect(json.loads(m.message_body.decode("utf-8")) == payload, "MNS received %r" % m.message_body)
    expect(m.priority == 8, "MNS Priority %r for an infrai message without priority, expected 8" % m.priority)
    expect(m.message_body_md5 in (md5_upper(base64.b64encode(m.message_body)), md5_upper(m.message_body)),
           "MessageBodyMD5 %r is the MD5 of neither the base64 nor the plain body" % m.message_body_md5)
    q.delete_message(m.receipt_handle)
    got = q.batch_receive_message(16, 1)
    expect([json.loads(g.message_body.decode()) for g in got] == ["just text"], "batch receive %r" % [g.message_body for g in got])
    q.batch_delete_message([g.receipt_handle for g in got])


@check("b64/priorities_keep_their_order_across_dialects")
def _():
    q = mkq("qb64p", account=b64acc)
    q.send_message(Message("mns p1", priority=1))
    q.send_message(Message("mns default"))
    status, r = infrai("/v1/queue/consume", {"queue": name("qb64p"), "max_messages": 10})
    expect(status == 200, "consume: %s %r" % (status, r))
    got = [(x["payload"], x["priority"]) for x in r.get("messages", [])]
    expect(sorted(got, key=lambda x: x[0]) == [("mns default", 8), ("mns p1", 16)],
           "infrai sees %r, expected MNS 1 as infrai 16 and MNS default as 8" % got)


# ---------------------------------------------------------------------------------------------
# HTTP endpoint, part 3: the retry of the push that failed at the start

@check("notify_http/backoff_retry_after_10_to_20_s")
def _():
    expect("first" in RETRY, "the first push did not happen (see notify_http/failed_push_is_pending_in_message_count)")
    rcv = receiver()
    left = RETRY["first"] + 25 - time.monotonic()
    hits = rcv.wait_for("/retry", 2, max(left, 0.1))
    expect(len(hits) >= 2, "no retry within 25 s of a push answered 500")
    dt = hits[1]["t"] - hits[0]["t"]
    expect(9.5 <= dt <= 21, "retried after %.1f s, BACKOFF_RETRY waits 10-20 s" % dt)
    check_push_common(hits[1], RETRY["id"], name("hretry"), "s-retry", "rt")
    expect(hits[1]["body"] == b"retry me", "retry body %r" % hits[1]["body"])
    deadline = time.monotonic() + 3
    while True:
        mc = acc.get_topic(name("hretry")).get_attributes().message_count
        if mc == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    expect(mc == 0, "MessageCount %s after the retry was answered 204" % mc)


@check("notify_http/2xx_answers_are_not_redelivered")
def _():
    rcv = receiver()
    for fmt, (path, mid) in sorted(HTTP.items()):
        hits = rcv.wait_for(path, 2, 0)
        expect(len(hits) == 1, "%s endpoint got %d pushes (answered %s)" % (fmt, len(hits), [h["status"] for h in hits]))
    hits = rcv.wait_for("/retry", 3, 0)
    expect(len(hits) == 2, "the retried push was pushed %d times" % len(hits))


# ---------------------------------------------------------------------------------------------

@check("cleanup/delete_every_topic_and_queue_of_this_run")
def _():
    problems = []
    for account, n in reversed(created_topics):
        try:
            account.get_topic(n).delete()
        except MNSServerException as e:
            if e.type != "TopicNotExist":
                problems.append("topic %s: %s" % (n, e.type))
        except Exception as e:
            problems.append("topic %s: %s" % (n, describe(e)))
    for account, n in reversed(created_queues):
        try:
            account.get_queue(n).delete()
        except MNSServerException as e:
            if e.type != "QueueNotExist":
                problems.append("queue %s: %s" % (n, e.type))
        except Exception as e:
            problems.append("queue %s: %s" % (n, describe(e)))
    try:
        acc.set_attributes(AccountMeta(""))
    except Exception as e:
        problems.append("account attributes: %s" % describe(e))
    expect(not problems, "; ".join(problems))
    for a in (acc, other, b64acc):
        left = a.list_topic(PFX)[0] + a.list_queue(PFX)[0]
        expect(left == [], "left: %r" % left)


def main():
    for n, fn in CHECKS:
        try:
            fn()
            report(n, True)
        except Fail as e:
            report(n, False, e)
        except Exception as e:
            report(n, False, describe(e))
    if RECEIVER is not None:
        RECEIVER.server.shutdown()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
