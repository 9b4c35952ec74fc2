#!/usr/bin/env python3
"""Real-client conformance for qgate's Aliyun MNS queue dialect, driven through the official
Python SDK `aliyun-mns` 1.1.5 (`import mns`).

Environment:
  QGATE_BASE     http://host:port (no trailing slash, no path)
  QGATE_AK/SK    an access key pair of tenant A
  QGATE_OTHER_AK/QGATE_OTHER_SK   a pair of a second tenant (default other-ak / other-sk)

Output: one line per check, `PASS <name>` or `FAIL <name>: <reason>`; exit status 1 if any failed.

Everything talks to the server through the SDK (`Account`, `Queue`, and where a check needs the
HTTP status or a response header, the SDK's own lower-level `MNSClient` request/response
objects). The few checks that must send something the SDK cannot (a stale Date, a garbage or
missing Authorization header) are in the RAW section at the end and use http.client.

The cross-SDK checks run tests/clients/mns/node/xsdk.js (official Node SDK) with `node`.

aliyun-mns 1.1.5 print()s the AccessKeySecret and the string-to-sign on every request, so this
script points sys.stdout at /dev/null for its whole run and writes its own lines to the real stdout.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import shutil
import string
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

OUT = sys.stdout
sys.stdout = open(os.devnull, "w")  # the SDK prints secrets and debug noise on stdout

failed = 0


def report(name, ok, why=""):
    global failed
    if ok:
        line = "PASS " + name
    else:
        failed += 1
        line = "FAIL %s: %s" % (name, " ".join(str(why).split())[:600])
    OUT.write(line + "\n")
    OUT.flush()


try:
    from mns.account import Account
    from mns.queue import Message, QueueMeta
    from mns.mns_exception import MNSClientNetworkException, MNSExceptionBase, MNSServerException
    from mns.mns_request import (
        CreateQueueRequest,
        CreateQueueResponse,
        GetQueueAttributesRequest,
        GetQueueAttributesResponse,
        DeleteQueueRequest,
        DeleteQueueResponse,
        SendMessageRequest,
        SendMessageResponse,
    )
except Exception as e:  # the SDK is not installed
    report("import aliyun-mns 1.1.5", False, repr(e))
    sys.exit(1)

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.normpath(os.path.join(HERE, "..", "node"))
BASE = os.environ.get("QGATE_BASE", "http://127.0.0.1:8080").rstrip("/")
AK = os.environ.get("QGATE_AK", "demo-ak")
SK = os.environ.get("QGATE_SK", "demo-sk")
OTHER_AK = os.environ.get("QGATE_OTHER_AK", "other-ak")
OTHER_SK = os.environ.get("QGATE_OTHER_SK", "other-sk")
RUN = "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(6))
PFX = "pymns-" + RUN  # every queue of this run starts with it

acc = Account(BASE, AK, SK)
other = Account(BASE, OTHER_AK, OTHER_SK)
created = []  # (account, queue name) for the final cleanup


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

def qname(suffix):
    return "%s-%s" % (PFX, suffix)


def meta(vis=30, maxsize=65536, ttl=345600, delay=0, poll=0, logging=None):
    return QueueMeta(vis_timeout=vis, max_msg_size=maxsize, msg_ttl=ttl, delay_sec=delay,
                     polling_wait_sec=poll, logging_enabled=logging)


def partial_meta(**kw):
    """A QueueMeta whose unset attributes are -1: the SDK leaves those out of the XML."""
    m = QueueMeta(vis_timeout=-1, max_msg_size=-1, msg_ttl=-1, delay_sec=-1, polling_wait_sec=-1)
    for k, v in kw.items():
        setattr(m, k, v)
    return m


def mkq(suffix, account=None, **kw):
    account = account or acc
    name = qname(suffix)
    created.append((account, name))
    q = account.get_queue(name)
    q.create(meta(**kw))
    return q


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


def now_ms():
    return int(time.time() * 1000)


def md5_upper(text):
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def b64(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def attrs(q):
    return q.get_attributes()


def counts(q):
    m = q.get_attributes()
    return (m.active_messages, m.inactive_messages, m.delay_messages)


def send(q, body, delay=None, priority=None):
    return q.send_message(Message(body, delay, priority))


def timed(fn, *args):
    t0 = time.monotonic()
    try:
        r = fn(*args)
        return r, None, time.monotonic() - t0
    except Exception as e:
        return None, e, time.monotonic() - t0


def in_background(fn):
    box = {}

    def run():
        t0 = time.monotonic()
        try:
            box["r"] = fn()
        except BaseException as e:  # noqa
            box["e"] = e
        box["t"] = time.monotonic() - t0

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, box


def is_stale_handle_error(e):
    return e.type in ("MessageNotExist", "ReceiptHandleError")


# ---------------------------------------------------------------------------------------------
# queues: create / get / set / delete / list

@check("create_queue/new_201_location")
def _():
    name = qname("c1")
    created.append((acc, name))
    resp, e = low(acc, "create_queue", CreateQueueRequest(name, 30, 65536, 345600, 0, 0), CreateQueueResponse())
    expect(e is None, "create failed: " + (describe(e) if e else ""))
    expect(resp.status == 201, "status %s, expected 201" % resp.status)
    want = "%s/queues/%s" % (BASE, name)
    expect(resp.queue_url == want, "Location %r, expected %r" % (resp.queue_url, want))


@check("create_queue/identical_attributes_204")
def _():
    name = qname("c1")
    resp, e = low(acc, "create_queue", CreateQueueRequest(name, 30, 65536, 345600, 0, 0), CreateQueueResponse())
    expect(e is None, "second identical create failed: " + (describe(e) if e else ""))
    expect(resp.status == 204, "status %s, expected 204" % resp.status)
    want = "%s/queues/%s" % (BASE, name)
    expect(resp.queue_url == want, "Location %r, expected %r" % (resp.queue_url, want))
    url = acc.get_queue(name).create(meta())  # Queue.create with the same attributes
    expect(url == want, "Queue.create returned %r" % url)


@check("create_queue/different_attributes_409")
def _():
    name = qname("c1")
    resp, e = low(acc, "create_queue", CreateQueueRequest(name, 60, 65536, 345600, 0, 0), CreateQueueResponse())
    expect(e is not None, "create with a different VisibilityTimeout succeeded (status %s)" % resp.status)
    expect_code(e, "QueueAlreadyExist")
    expect(resp.status == 409, "status %s, expected 409" % resp.status)
    expect(acc.get_queue(name).get_attributes().visibility_timeout == 30, "the refused create changed the queue")


@check("create_queue/empty_body_gets_mns_defaults")
def _():
    name = qname("c2")
    created.append((acc, name))
    q = acc.get_queue(name)
    q.create(partial_meta())  # <Queue xmlns="..."></Queue>
    m = q.get_attributes()
    got = (m.delay_seconds, m.maximum_message_size, m.message_retention_period, m.visibility_timeout,
           m.polling_wait_seconds, m.logging_enabled)
    expect(got == (0, 65536, 345600, 30, 0, False), "attributes %r, expected (0, 65536, 345600, 30, 0, False)" % (got,))


@check("create_queue/sdk_default_queuemeta_stored")
def _():
    name = qname("c3")
    created.append((acc, name))
    q = acc.get_queue(name)
    q.create(QueueMeta())  # the SDK sends 30 / 2048 / 86400 / 0 / 0
    m = q.get_attributes()
    got = (m.visibility_timeout, m.maximum_message_size, m.message_retention_period, m.delay_seconds, m.polling_wait_seconds)
    expect(got == (30, 2048, 86400, 0, 0), "attributes %r" % (got,))


@check("create_queue/invalid_name_400")
def _():
    name = "%s_bad_name" % PFX
    created.append((acc, name))
    resp, e = low(acc, "create_queue", CreateQueueRequest(name, 30), CreateQueueResponse())
    expect(e is not None, "a queue name with '_' was accepted")
    expect_code(e, "InvalidQueueName")
    expect(resp.status == 400, "status %s" % resp.status)


@check("get_queue_attributes/all_12_fields")
def _():
    t0 = int(time.time())
    q = mkq("ga", vis=45, maxsize=4096, ttl=3600, delay=3, poll=4, logging=True)
    m = q.get_attributes()
    expect(m.queue_name == qname("ga"), "QueueName %r" % m.queue_name)
    got = (m.visibility_timeout, m.maximum_message_size, m.message_retention_period, m.delay_seconds,
           m.polling_wait_seconds, m.logging_enabled)
    expect(got == (45, 4096, 3600, 3, 4, True), "attributes %r, expected (45, 4096, 3600, 3, 4, True)" % (got,))
    expect((m.active_messages, m.inactive_messages, m.delay_messages) == (0, 0, 0),
           "counts %r on a new queue" % ((m.active_messages, m.inactive_messages, m.delay_messages),))
    expect(abs(m.create_time - t0) < 300, "CreateTime %s is not epoch seconds near %s" % (m.create_time, t0))
    expect(m.create_time <= m.last_modify_time < t0 + 300, "LastModifyTime %s vs CreateTime %s" % (m.last_modify_time, m.create_time))


@check("get_queue_attributes/response_headers")
def _():
    resp, e = low(acc, "get_queue_attributes", GetQueueAttributesRequest(qname("ga")), GetQueueAttributesResponse())
    expect(e is None, describe(e) if e else "")
    rid = resp.header.get("x-mns-request-id")
    expect(rid, "no x-mns-request-id header")
    expect(resp.header.get("x-mns-version") == "2015-06-06", "x-mns-version %r" % resp.header.get("x-mns-version"))
    resp, e = low(acc, "get_queue_attributes", GetQueueAttributesRequest(qname("nosuch")), GetQueueAttributesResponse())
    expect(e is not None, "missing queue answered %s" % resp.status)
    expect(e.request_id and e.host_id, "error without RequestId/HostId: %r %r" % (e.request_id, e.host_id))
    expect(resp.header.get("x-mns-request-id"), "error response without x-mns-request-id")


@check("set_queue_attributes/partial_update")
def _():
    q = acc.get_queue(qname("ga"))
    before = q.get_attributes()
    q.set_attributes(partial_meta(visibility_timeout=50))  # only <VisibilityTimeout>
    m = q.get_attributes()
    got = (m.visibility_timeout, m.maximum_message_size, m.message_retention_period, m.delay_seconds,
           m.polling_wait_seconds, m.logging_enabled)
    expect(got == (50, 4096, 3600, 3, 4, True), "attributes %r, expected (50, 4096, 3600, 3, 4, True)" % (got,))
    expect(m.last_modify_time >= before.last_modify_time, "LastModifyTime went back")
    expect(m.create_time == before.create_time, "CreateTime changed")
    q.set_attributes(meta(vis=40, maxsize=8192, ttl=7200, delay=0, poll=0, logging=False))
    m = q.get_attributes()
    got = (m.visibility_timeout, m.maximum_message_size, m.message_retention_period, m.delay_seconds,
           m.polling_wait_seconds, m.logging_enabled)
    expect(got == (40, 8192, 7200, 0, 0, False), "after a full set: %r" % (got,))


@check("set_queue_attributes/out_of_range_invalid_argument")
def _():
    q = acc.get_queue(qname("ga"))
    e = server_error(q.set_attributes, partial_meta(maximum_message_size=65537))
    expect_code(e, "InvalidArgument")
    e = server_error(q.set_attributes, partial_meta(visibility_timeout=43201))
    expect_code(e, "InvalidArgument")
    m = q.get_attributes()
    expect((m.maximum_message_size, m.visibility_timeout) == (8192, 40), "refused set changed the queue: %r" %
           ((m.maximum_message_size, m.visibility_timeout),))


@check("set_queue_attributes/missing_queue")
def _():
    e = server_error(acc.get_queue(qname("nosuch")).set_attributes, partial_meta(visibility_timeout=10))
    expect_code(e, "QueueNotExist")


@check("get_queue_attributes/missing_queue_404")
def _():
    resp, e = low(acc, "get_queue_attributes", GetQueueAttributesRequest(qname("nosuch")), GetQueueAttributesResponse())
    expect(e is not None, "succeeded")
    expect_code(e, "QueueNotExist")
    expect(resp.status == 404, "status %s" % resp.status)


@check("get_queue_attributes/live_counts")
def _():
    q = mkq("cnt", vis=30)
    send(q, "one")
    send(q, "two")
    send(q, "later", delay=60)
    expect(counts(q) == (2, 0, 1), "after 2 sends + 1 delayed: (active, inactive, delay) = %r, expected (2, 0, 1)" % (counts(q),))
    m = q.receive_message()
    expect(counts(q) == (1, 1, 1), "after one receive: %r, expected (1, 1, 1)" % (counts(q),))
    q.delete_message(m.receipt_handle)
    expect(counts(q) == (1, 0, 1), "after deleting it: %r, expected (1, 0, 1)" % (counts(q),))
    q.peek_message()
    expect(counts(q) == (1, 0, 1), "peek changed the counts: %r" % (counts(q),))


@check("delete_queue/then_queue_not_exist")
def _():
    name = qname("del")
    q = mkq("del")
    send(q, "doomed")
    resp, e = low(acc, "delete_queue", DeleteQueueRequest(name), DeleteQueueResponse())
    expect(e is None, "delete failed: " + (describe(e) if e else ""))
    expect(resp.status == 204, "DeleteQueue status %s, expected 204" % resp.status)
    for what, fn, args in (("get_attributes", q.get_attributes, ()),
                           ("send_message", q.send_message, (Message("x"),)),
                           ("receive_message", q.receive_message, ()),
                           ("peek_message", q.peek_message, ()),
                           ("delete", q.delete, ())):
        e = server_error(fn, *args)
        expect(e.type == "QueueNotExist", "%s on a deleted queue: %s" % (what, e.type))


@check("delete_queue/recreated_queue_is_empty")
def _():
    name = qname("del")
    resp, e = low(acc, "create_queue", CreateQueueRequest(name, 30, 65536, 345600, 0, 0), CreateQueueResponse())
    expect(e is None, "re-create failed: " + (describe(e) if e else ""))
    expect(resp.status == 201, "re-create status %s, expected 201" % resp.status)
    q = acc.get_queue(name)
    expect(counts(q) == (0, 0, 0), "counts %r" % (counts(q),))
    e = server_error(q.receive_message)
    expect_code(e, "MessageNotExist")


LIST_NAMES = [qname("ls-%d" % i) for i in range(5)]


@check("list_queue/prefix")
def _():
    for n in LIST_NAMES:
        created.append((acc, n))
        acc.get_queue(n).create(meta())
    mkq("lsx")  # shares PFX but not the "-ls-" prefix
    urls, marker = acc.list_queue(prefix=qname("ls-"))
    want = ["%s/queues/%s" % (BASE, n) for n in LIST_NAMES]
    expect(urls == want, "got %r, expected %r" % (urls, want))
    expect(marker == "", "NextMarker %r on the only page" % marker)


@check("list_queue/marker_paging")
def _():
    want = ["%s/queues/%s" % (BASE, n) for n in LIST_NAMES]
    pages, marker, seen = [], "", []
    for _ in range(6):
        urls, marker = acc.list_queue(prefix=qname("ls-"), ret_number=2, marker=marker)
        pages.append(len(urls))
        seen += urls
        if marker == "":
            break
    expect(pages == [2, 2, 1], "page sizes %r, expected [2, 2, 1]" % pages)
    expect(seen == want, "paged through %r" % seen)


@check("list_queue/full_last_page_has_no_marker")
def _():
    urls, marker = acc.list_queue(prefix=qname("ls-"), ret_number=5)
    expect(len(urls) == 5, "%d queues" % len(urls))
    expect(marker == "", "NextMarker %r although nothing follows" % marker)
    urls, marker = acc.list_queue(prefix=qname("ls-"), ret_number=4)
    expect(len(urls) == 4 and marker != "", "ret-number 4 of 5: %d queues, marker %r" % (len(urls), marker))
    urls, marker = acc.list_queue(prefix=qname("ls-"), ret_number=4, marker=marker)
    expect(len(urls) == 1 and marker == "", "second page: %r, marker %r" % (urls, marker))


@check("list_queue/ret_number_out_of_range")
def _():
    e = server_error(acc.list_queue, qname("ls-"), 1001)
    expect_code(e, "InvalidArgument")


@check("list_queue/no_match_is_empty")
def _():
    urls, marker = acc.list_queue(prefix=qname("nothing-here"))
    expect(urls == [] and marker == "", "got %r, %r" % (urls, marker))


# ---------------------------------------------------------------------------------------------
# tenants and authentication

@check("tenant/queue_invisible_to_other_tenant")
def _():
    q = mkq("iso")
    send(q, "tenant A only")
    oq = other.get_queue(qname("iso"))
    for what, fn, args in (("get_attributes", oq.get_attributes, ()),
                           ("send_message", oq.send_message, (Message("x"),)),
                           ("receive_message", oq.receive_message, ()),
                           ("peek_message", oq.peek_message, ()),
                           ("delete", oq.delete, ())):
        e = server_error(fn, *args)
        expect(e.type == "QueueNotExist", "tenant B %s on tenant A's queue: %s" % (what, e.type))
    expect(counts(q) == (1, 0, 0), "tenant A's queue changed: %r" % (counts(q),))
    urls, _m = other.list_queue(prefix=PFX)
    expect(urls == [], "tenant B lists tenant A's queues: %r" % urls)


@check("tenant/same_name_is_independent")
def _():
    name = qname("iso")
    created.append((other, name))
    resp, e = low(other, "create_queue", CreateQueueRequest(name, 30, 65536, 345600, 0, 0), CreateQueueResponse())
    expect(e is None, "tenant B create failed: " + (describe(e) if e else ""))
    expect(resp.status == 201, "tenant B create status %s, expected 201 (a new queue)" % resp.status)
    oq = other.get_queue(name)
    send(oq, "tenant B")
    send(oq, "tenant B again")
    expect(counts(oq) == (2, 0, 0), "tenant B counts %r" % (counts(oq),))
    q = acc.get_queue(name)
    expect(counts(q) == (1, 0, 0), "tenant A counts %r" % (counts(q),))
    m = q.receive_message()
    expect(m.message_body == "tenant A only", "tenant A received %r" % m.message_body)
    oq.delete()
    expect(counts(q)[1] == 1, "deleting tenant B's queue touched tenant A's")


@check("auth/wrong_secret_403")
def _():
    bad = Account(BASE, AK, SK + "-wrong")
    resp, e = low(bad, "get_queue_attributes", GetQueueAttributesRequest(qname("ga")), GetQueueAttributesResponse())
    expect(e is not None, "a wrong secret was accepted (status %s)" % resp.status)
    expect_code(e, "SignatureDoesNotMatch", "AccessDenied")
    expect(resp.status == 403, "status %s" % resp.status)
    e = server_error(bad.get_queue(qname("ga")).send_message, Message("x"))
    expect_code(e, "SignatureDoesNotMatch", "AccessDenied")


@check("auth/unknown_access_key_403")
def _():
    bad = Account(BASE, "no-such-key-" + RUN, SK)
    resp, e = low(bad, "get_queue_attributes", GetQueueAttributesRequest(qname("ga")), GetQueueAttributesResponse())
    expect(e is not None, "an unknown AccessKeyId was accepted (status %s)" % resp.status)
    expect_code(e, "InvalidAccessKeyId")
    expect(resp.status == 403, "status %s" % resp.status)


# ---------------------------------------------------------------------------------------------
# messages

@check("send_receive/round_trip_and_fields")
def _():
    q = mkq("rt", vis=30)
    body = "hello qgate"
    t0 = now_ms()
    sent = send(q, body)
    t1 = now_ms()
    expect(sent.message_id, "no MessageId")
    expect(sent.message_body_md5 == md5_upper(b64(body)),
           "send MessageBodyMD5 %r, expected upper-case hex MD5 of the base64 body %r" % (sent.message_body_md5, md5_upper(b64(body))))
    r0 = now_ms()
    m = q.receive_message()
    r1 = now_ms()
    expect(m.message_body == body, "body %r" % m.message_body)
    expect(m.message_id == sent.message_id, "MessageId %r vs sent %r" % (m.message_id, sent.message_id))
    expect(m.message_body_md5 == sent.message_body_md5, "receive MD5 %r vs send MD5 %r" % (m.message_body_md5, sent.message_body_md5))
    expect(m.dequeue_count == 1, "DequeueCount %s" % m.dequeue_count)
    expect(m.priority == 8, "default Priority %s, expected 8" % m.priority)
    expect(m.receipt_handle, "no ReceiptHandle")
    expect(t0 - 1000 <= m.enqueue_time <= t1 + 1000, "EnqueueTime %s not within [%s, %s] ms" % (m.enqueue_time, t0, t1))
    expect(r0 - 1000 <= m.first_dequeue_time <= r1 + 1000, "FirstDequeueTime %s not within [%s, %s]" % (m.first_dequeue_time, r0, r1))
    expect(m.first_dequeue_time >= m.enqueue_time, "FirstDequeueTime before EnqueueTime")
    expect(r0 + 29000 <= m.next_visible_time <= r1 + 31000,
           "NextVisibleTime %s is not receive time + 30 s (%s..%s)" % (m.next_visible_time, r0 + 30000, r1 + 30000))
    q.delete_message(m.receipt_handle)
    expect(counts(q) == (0, 0, 0), "after delete: %r" % (counts(q),))


@check("delete_message/stale_and_garbage_handles")
def _():
    q = mkq("stale")
    send(q, "x")
    m = q.receive_message()
    q.delete_message(m.receipt_handle)
    e = server_error(q.delete_message, m.receipt_handle)
    expect(is_stale_handle_error(e), "deleting twice: %s" % e.type)
    e = server_error(q.delete_message, "not-a-handle")
    expect(is_stale_handle_error(e), "garbage handle: %s" % e.type)


@check("bodies/special_and_non_ascii_round_trip")
def _():
    q = mkq("bodies")
    bodies = ['a & b < c > d "q" \'s\' ]]> <![CDATA[x]]>', "中文消息 ünïcødé ✓ 🚀", "  leading and trailing  \n second line\t"]
    for b in bodies:
        sent = send(q, b)
        expect(sent.message_body_md5 == md5_upper(b64(b)), "MD5 %r for %r" % (sent.message_body_md5, b))
        m = q.receive_message()
        expect(m.message_body == b, "sent %r, received %r" % (b, m.message_body))
        q.delete_message(m.receipt_handle)
    q.batch_send_message([Message(b) for b in bodies])
    got = q.batch_receive_message(16)
    texts = [g.message_body.decode("utf-8") for g in got]  # batch receive returns bytes
    expect(texts == bodies, "batch round trip %r" % texts)
    q.batch_delete_message([g.receipt_handle for g in got])


@check("peek/before_receive_changes_nothing")
def _():
    q = mkq("pk")
    sent = send(q, "peek me")
    p = q.peek_message()
    expect(p.message_id == sent.message_id and p.message_body == "peek me", "peeked %r %r" % (p.message_id, p.message_body))
    expect(p.dequeue_count == 0, "DequeueCount %s before any receive" % p.dequeue_count)
    expect(p.first_dequeue_time == p.enqueue_time, "FirstDequeueTime %s != EnqueueTime %s before any receive" % (p.first_dequeue_time, p.enqueue_time))
    expect(p.message_body_md5 == sent.message_body_md5, "peek MD5 %r" % p.message_body_md5)
    expect(q.peek_message().message_id == sent.message_id, "second peek differs")
    expect(counts(q) == (1, 0, 0), "peek changed counts: %r" % (counts(q),))
    m = q.receive_message()
    expect(m.dequeue_count == 1, "DequeueCount %s after two peeks" % m.dequeue_count)
    e = server_error(q.peek_message)
    expect(e.type == "MessageNotExist", "peek saw an inactive message: %s" % e.type)
    e = server_error(q.batch_peek_message, 16)
    expect(e.type == "MessageNotExist", "batch peek on an inactive-only queue: %s" % e.type)
    q.delete_message(m.receipt_handle)


@check("batch_peek/returns_active_in_order")
def _():
    q = mkq("bpk")
    ids = [send(q, "bp-%d" % i).message_id for i in range(3)]
    got = q.batch_peek_message(16)
    expect([g.message_id for g in got] == ids, "ids %r, expected %r" % ([g.message_id for g in got], ids))
    expect([g.message_body for g in got] == ["bp-0", "bp-1", "bp-2"], "bodies %r" % [g.message_body for g in got])
    expect(all(g.dequeue_count == 0 for g in got), "DequeueCount not 0")
    expect(len(q.batch_peek_message(2)) == 2, "batch_peek(2) did not return 2")
    expect(counts(q) == (3, 0, 0), "batch peek changed counts: %r" % (counts(q),))


@check("receive/empty_queue_immediate_message_not_exist")
def _():
    q = mkq("empty")
    _r, e, dt = timed(q.receive_message)
    expect(isinstance(e, MNSServerException) and e.type == "MessageNotExist", "got %s" % (describe(e) if e else "a message"))
    expect(dt < 1.5, "took %.2f s with PollingWaitSeconds 0" % dt)
    _r, e, dt = timed(q.batch_receive_message, 16)
    expect(isinstance(e, MNSServerException) and e.type == "MessageNotExist", "batch: %s" % (describe(e) if e else "messages"))
    e = server_error(q.peek_message)
    expect_code(e, "MessageNotExist")
    e = server_error(q.batch_peek_message, 16)
    expect_code(e, "MessageNotExist")


@check("batch_send/16_then_batch_receive_and_delete")
def _():
    q = mkq("b16", vis=30)
    bodies = ["batch-%02d" % i for i in range(16)]
    res = q.batch_send_message([Message(b) for b in bodies])
    expect(len(res) == 16, "%d results" % len(res))
    expect(len(set(r.message_id for r in res)) == 16, "MessageIds not unique")
    for b, r in zip(bodies, res):
        expect(r.message_body_md5 == md5_upper(b64(b)), "MD5 %r for %r (results out of order?)" % (r.message_body_md5, b))
    expect(counts(q) == (16, 0, 0), "counts %r" % (counts(q),))
    got = q.batch_receive_message(16)
    expect(len(got) == 16, "batch_receive(16) returned %d of 16 available" % len(got))
    expect([g.message_body.decode() for g in got] == bodies, "order/bodies %r" % [g.message_body for g in got])
    expect([g.message_id for g in got] == [r.message_id for r in res], "ids differ from send order")
    expect(all(g.dequeue_count == 1 for g in got), "DequeueCount not 1")
    expect(len(set(g.receipt_handle for g in got)) == 16, "receipt handles not unique")
    expect(counts(q) == (0, 16, 0), "counts after receive %r" % (counts(q),))
    q.batch_delete_message([g.receipt_handle for g in got])
    expect(counts(q) == (0, 0, 0), "counts after batch delete %r" % (counts(q),))


@check("batch_send/17_refused")
def _():
    q = mkq("b17")
    e = server_error(q.batch_send_message, [Message("m%d" % i) for i in range(17)])
    expect_code(e, "InvalidArgument")
    expect(counts(q) == (0, 0, 0), "17-message batch enqueued something: %r" % (counts(q),))


@check("batch_send/partial_failure_per_entry")
def _():
    q = mkq("bpart", maxsize=1024)
    e = server_error(q.batch_send_message, [Message("ok-1"), Message("x" * 2000), Message("ok-2")])
    expect_code(e, "InvalidArgument")
    subs = e.sub_errors or []
    expect(len(subs) == 3, "%d entries in the error response, expected 3: %r" % (len(subs), subs))
    expect(sorted(subs[0]) == ["MessageBodyMD5", "MessageId"] and sorted(subs[2]) == ["MessageBodyMD5", "MessageId"],
           "entries 1 and 3 should be successes: %r" % subs)
    expect(subs[1].get("ErrorCode") == "InvalidArgument", "entry 2: %r" % subs[1])
    expect(subs[0]["MessageBodyMD5"] == md5_upper(b64("ok-1")), "entry 1 MD5 %r" % subs[0]["MessageBodyMD5"])
    expect(counts(q) == (2, 0, 0), "the two valid messages were not both enqueued: %r" % (counts(q),))


@check("batch_delete/one_stale_handle")
def _():
    q = mkq("bdel", vis=30)
    q.batch_send_message([Message("bd-%d" % i) for i in range(3)])
    got = q.batch_receive_message(3)
    expect(len(got) == 3, "received %d" % len(got))
    stale = got[1].receipt_handle
    q.delete_message(stale)
    e = server_error(q.batch_delete_message, [got[0].receipt_handle, stale, got[2].receipt_handle])
    expect(is_stale_handle_error(e), "error code %s" % e.type)
    subs = e.sub_errors or []
    expect(len(subs) == 1, "%d failed entries reported, expected 1: %r" % (len(subs), subs))
    expect(subs[0].get("ReceiptHandle") == stale, "reported handle %r, expected the stale one" % subs[0].get("ReceiptHandle"))
    expect(counts(q) == (0, 0, 0), "the valid handles were not deleted: counts %r" % (counts(q),))


@check("change_visibility/new_handle_old_fails")
def _():
    q = mkq("cmv", vis=30)
    send(q, "cmv")
    m = q.receive_message()
    t0 = now_ms()
    c = q.change_message_visibility(m.receipt_handle, 20)
    t1 = now_ms()
    expect(c.receipt_handle and c.receipt_handle != m.receipt_handle, "new handle %r (old %r)" % (c.receipt_handle, m.receipt_handle))
    nvt = int(c.next_visible_time)
    expect(t0 + 19000 <= nvt <= t1 + 21000, "NextVisibleTime %s is not now + 20 s (%s)" % (nvt, t0 + 20000))
    e = server_error(q.delete_message, m.receipt_handle)
    expect(is_stale_handle_error(e), "old handle delete: %s" % e.type)
    e = server_error(q.change_message_visibility, m.receipt_handle, 10)
    expect(is_stale_handle_error(e), "old handle change visibility: %s" % e.type)
    expect(counts(q) == (0, 1, 0), "counts %r" % (counts(q),))
    q.delete_message(c.receipt_handle)
    expect(counts(q) == (0, 0, 0), "new handle did not delete: %r" % (counts(q),))


@check("change_visibility/shorten_redelivers")
def _():
    q = mkq("cmv2", vis=30)
    sent = send(q, "short")
    m = q.receive_message()
    q.change_message_visibility(m.receipt_handle, 1)
    time.sleep(1.5)
    m2 = q.receive_message()
    expect(m2.message_id == sent.message_id, "got %r" % m2.message_id)
    expect(m2.dequeue_count == 2, "DequeueCount %s" % m2.dequeue_count)
    q.delete_message(m2.receipt_handle)


@check("change_visibility/zero_timeout_invalid_argument")
def _():
    q = acc.get_queue(qname("cmv2"))
    send(q, "z")
    m = q.receive_message()
    e = server_error(q.change_message_visibility, m.receipt_handle, 0)
    expect_code(e, "InvalidArgument")
    q.delete_message(m.receipt_handle)


@check("visibility_timeout/redelivery_new_handle")
def _():
    q = mkq("vis", vis=2)
    sent = send(q, "again")
    m1 = q.receive_message()
    e = server_error(q.receive_message)
    expect(e.type == "MessageNotExist", "received while invisible: %s" % e.type)
    time.sleep(2.4)
    r0 = now_ms()
    m2 = q.receive_message()
    r1 = now_ms()
    expect(m2.message_id == sent.message_id, "different message %r" % m2.message_id)
    expect(m2.dequeue_count == m1.dequeue_count + 1 == 2, "DequeueCount %s then %s" % (m1.dequeue_count, m2.dequeue_count))
    expect(m2.receipt_handle != m1.receipt_handle, "same receipt handle on redelivery")
    expect(m2.first_dequeue_time == m1.first_dequeue_time, "FirstDequeueTime changed %s -> %s" % (m1.first_dequeue_time, m2.first_dequeue_time))
    expect(m2.enqueue_time == m1.enqueue_time, "EnqueueTime changed")
    expect(r0 + 1000 <= m2.next_visible_time <= r1 + 3000, "NextVisibleTime %s not receive + 2 s (%s)" % (m2.next_visible_time, r0 + 2000))
    e = server_error(q.delete_message, m1.receipt_handle)
    expect(is_stale_handle_error(e), "first delivery's handle: %s" % e.type)
    q.delete_message(m2.receipt_handle)
    expect(counts(q) == (0, 0, 0), "counts %r" % (counts(q),))


@check("long_poll/returns_early_on_send")
def _():
    q = mkq("lp1")
    poller = Account(BASE, AK, SK).get_queue(qname("lp1"))  # own connection: MNSClient is not thread-safe
    th, box = in_background(lambda: poller.receive_message(10))
    time.sleep(1.0)
    send(q, "wake up")
    th.join(15)
    expect("e" not in box, "long poll failed: " + describe(box.get("e")) if "e" in box else "")
    expect("r" in box, "long poll did not return within 15 s")
    expect(box["r"].message_body == "wake up", "got %r" % box["r"].message_body)
    expect(0.8 <= box["t"] < 8, "returned after %.2f s (send at ~1 s, wait 10 s)" % box["t"])
    q.delete_message(box["r"].receipt_handle)


@check("long_poll/batch_returns_early_on_send")
def _():
    q = mkq("lp2")
    poller = Account(BASE, AK, SK).get_queue(qname("lp2"))
    th, box = in_background(lambda: poller.batch_receive_message(16, 10))
    time.sleep(1.0)
    send(q, "wake batch")
    th.join(15)
    expect("e" not in box, "long poll failed: " + describe(box.get("e")) if "e" in box else "")
    expect("r" in box, "batch long poll did not return within 15 s")
    expect([g.message_body for g in box["r"]] == [b"wake batch"], "got %r" % [g.message_body for g in box["r"]])
    expect(0.8 <= box["t"] < 8, "returned after %.2f s" % box["t"])


@check("long_poll/empty_waits_then_message_not_exist")
def _():
    q = mkq("lp3")
    _r, e, dt = timed(q.receive_message, 2)
    expect(isinstance(e, MNSServerException) and e.type == "MessageNotExist", "got %s" % (describe(e) if e else "a message"))
    expect(1.8 <= dt < 6, "waitseconds=2 answered after %.2f s" % dt)
    _r, e, dt = timed(q.batch_receive_message, 4, 1)
    expect(isinstance(e, MNSServerException) and e.type == "MessageNotExist", "batch: %s" % (describe(e) if e else "messages"))
    expect(0.8 <= dt < 5, "batch waitseconds=1 answered after %.2f s" % dt)


@check("long_poll/queue_polling_wait_seconds_default")
def _():
    q = mkq("lp4", poll=2)
    _r, e, dt = timed(q.receive_message)  # no waitseconds: the queue's PollingWaitSeconds applies
    expect(isinstance(e, MNSServerException) and e.type == "MessageNotExist", "got %s" % (describe(e) if e else "a message"))
    expect(1.8 <= dt < 6, "PollingWaitSeconds=2 queue answered after %.2f s" % dt)


@check("long_poll/explicit_waitseconds_0_overrides_queue_default")
def _():
    q = acc.get_queue(qname("lp4"))
    _r, e, dt = timed(q.receive_message, 0)
    expect(isinstance(e, MNSServerException) and e.type == "MessageNotExist", "got %s" % (describe(e) if e else "a message"))
    expect(dt < 1.5, "waitseconds=0 on a PollingWaitSeconds=2 queue answered after %.2f s" % dt)


@check("long_poll/waitseconds_over_30_invalid")
def _():
    e = server_error(acc.get_queue(qname("lp4")).receive_message, 31)
    expect_code(e, "InvalidArgument")


@check("priority/lower_number_served_first")
def _():
    q = mkq("prio")
    send(q, "p16", priority=16)
    send(q, "p8", priority=8)
    send(q, "p1", priority=1)
    got = []
    for _i in range(3):
        m = q.receive_message()
        got.append((m.priority, m.message_body))
        q.delete_message(m.receipt_handle)
    expect(got == [(1, "p1"), (8, "p8"), (16, "p16")], "received %r" % got)
    q.batch_send_message([Message("8a", -1, 8), Message("16", -1, 16), Message("1", -1, 1), Message("8b", -1, 8)])
    got = q.batch_receive_message(4)
    expect([g.message_body.decode() for g in got] == ["1", "8a", "8b", "16"],
           "batch order %r, expected priority then send order" % [g.message_body for g in got])
    q.batch_delete_message([g.receipt_handle for g in got])


@check("priority/out_of_range_invalid_argument")
def _():
    q = acc.get_queue(qname("prio"))
    for p in (0, 17):
        e = server_error(send, q, "bad", None, p)
        expect(e.type == "InvalidArgument", "Priority %d: %s" % (p, e.type))


@check("delay/per_message_delay")
def _():
    q = mkq("dly")
    sent = send(q, "later", delay=2)
    e = server_error(q.receive_message)
    expect(e.type == "MessageNotExist", "a delayed message was receivable at once: %s" % e.type)
    e = server_error(q.peek_message)
    expect(e.type == "MessageNotExist", "a delayed message was peekable: %s" % e.type)
    expect(counts(q) == (0, 0, 1), "counts %r, expected (0, 0, 1)" % (counts(q),))
    time.sleep(2.4)
    expect(counts(q) == (1, 0, 0), "after the delay: counts %r, expected (1, 0, 0)" % (counts(q),))
    m = q.receive_message()
    expect(m.message_id == sent.message_id and m.message_body == "later", "got %r" % m.message_body)
    q.delete_message(m.receipt_handle)


@check("delay/queue_default_and_explicit_zero")
def _():
    q = mkq("dlyq", delay=2)
    send(q, "A default delay")
    send(q, "B explicit 0", delay=0)
    m = q.receive_message()
    expect(m.message_body == "B explicit 0", "first receive %r" % m.message_body)
    q.delete_message(m.receipt_handle)
    e = server_error(q.receive_message)
    expect(e.type == "MessageNotExist", "queue DelaySeconds ignored: %s" % e.type)
    expect(counts(q) == (0, 0, 1), "counts %r" % (counts(q),))
    time.sleep(2.4)
    m = q.receive_message()
    expect(m.message_body == "A default delay", "got %r" % m.message_body)
    q.delete_message(m.receipt_handle)


@check("delay/long_poll_wakes_when_delay_ends")
def _():
    q = mkq("dlylp")
    send(q, "soon", delay=1)
    m, e, dt = timed(q.receive_message, 5)
    expect(e is None, describe(e) if e else "")
    expect(m.message_body == "soon", "got %r" % m.message_body)
    expect(0.5 <= dt < 4, "returned after %.2f s (delay 1 s, wait 5 s)" % dt)
    q.delete_message(m.receipt_handle)


@check("delay/out_of_range_invalid_argument")
def _():
    e = server_error(send, acc.get_queue(qname("dly")), "x", 604801)
    expect_code(e, "InvalidArgument")


@check("max_message_size/measured_on_base64_body")
def _():
    q = mkq("max", maxsize=1024)
    ok = "a" * 768  # base64: exactly 1024 characters
    sent = send(q, ok)
    expect(sent.message_body_md5 == md5_upper(b64(ok)), "MD5 %r" % sent.message_body_md5)
    e = server_error(send, q, "a" * 769)  # 769 bytes raw, 1028 as sent
    expect_code(e, "InvalidArgument")
    expect(counts(q) == (1, 0, 0), "counts %r" % (counts(q),))
    resp, e = low(acc, "send_message", SendMessageRequest(qname("max"), "b" * 1000), SendMessageResponse())
    expect(e is not None and e.type == "InvalidArgument" and resp.status == 400,
           "1000-byte body (1336 base64) on a 1024 queue: status %s %s" % (resp.status, e.type if e else "accepted"))


# ---------------------------------------------------------------------------------------------
# cross-SDK: the official Node SDK (raw bodies) <-> this SDK

def node_helper(*args):
    node = shutil.which("node")
    helper = os.path.join(NODE_DIR, "xsdk.js")
    if not node:
        raise Fail("node is not on PATH")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@alicloud", "mns")):
        raise Fail("the Node SDK is not installed (cd %s && npm ci)" % NODE_DIR)
    p = subprocess.run([node, helper] + list(args), capture_output=True, text=True, timeout=60, env=dict(os.environ))
    if p.returncode != 0:
        raise Fail("xsdk.js %s exited %d: %s" % (args[0], p.returncode, (p.stderr or p.stdout)[-600:]))
    return json.loads(p.stdout)


XBODY = 'Node raw & <xml/> "quotes" \'apos\' 中文 ✓ 🚀'


@check("cross_sdk/node_raw_send_python_receive_no_base64")
def _():
    q = mkq("x1")
    r = node_helper("send", qname("x1"), XBODY)
    expect(r["MessageBodyMD5"] == md5_upper(XBODY), "Node send MD5 %r, expected %r" % (r["MessageBodyMD5"], md5_upper(XBODY)))
    q.set_encoding(False)
    m = q.receive_message()
    expect(m.message_body == XBODY, "Python received %r" % m.message_body)
    expect(m.message_id == r["MessageId"], "MessageId differs")
    expect(m.message_body_md5 == md5_upper(XBODY), "receive MD5 %r" % m.message_body_md5)
    q.delete_message(m.receipt_handle)


@check("cross_sdk/node_raw_send_python_batch_receive_no_base64")
def _():
    q = mkq("x1b")
    node_helper("send", qname("x1b"), XBODY + " #2")
    q.set_encoding(False)
    got = q.batch_receive_message(16)
    expect([g.message_body for g in got] == [XBODY + " #2"], "Python batch received %r" % [g.message_body for g in got])
    q.batch_delete_message([g.receipt_handle for g in got])


@check("cross_sdk/python_send_node_receive_and_python_delete")
def _():
    q = mkq("x2")
    body = "Python → Node & <b>中文</b>"
    sent = send(q, body)
    r = node_helper("receive", qname("x2"))
    expect(r["MessageId"] == sent.message_id, "Node received %r" % r)
    expect(r["MessageBody"] == b64(body), "Node got %r, expected the base64 text %r" % (r["MessageBody"], b64(body)))
    expect(base64.b64decode(r["MessageBody"]).decode() == body, "decoded body differs")
    expect(r["MessageBodyMD5"] == sent.message_body_md5, "Node MD5 %r vs Python send MD5 %r" % (r["MessageBodyMD5"], sent.message_body_md5))
    q.delete_message(r["ReceiptHandle"])  # a Node-obtained handle, deleted through Python
    expect(counts(q) == (0, 0, 0), "counts %r" % (counts(q),))


# ---------------------------------------------------------------------------------------------
# RAW: requests the SDK cannot make (stale Date, garbage or missing Authorization). http.client.

def raw_get(path, date=None, auth="sign", extra=None):
    u = urlsplit(BASE)
    headers = {"x-mns-version": "2015-06-06", "Date": date or time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())}
    headers.update(extra or {})
    if auth == "sign":
        canon = "".join("%s:%s\n" % (k, headers[k]) for k in sorted(h for h in headers if h.startswith("x-mns-")))
        sts = "GET\n\n\n%s\n%s%s" % (headers["Date"], canon, path)
        sig = base64.b64encode(hmac.new(SK.encode(), sts.encode(), hashlib.sha1).digest()).decode()
        headers["Authorization"] = "MNS %s:%s" % (AK, sig)
    elif auth is not None:
        headers["Authorization"] = auth
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, r.getheader("content-type") or "", r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def error_code(body):
    from xml.dom.minidom import parseString
    try:
        d = parseString(body)
    except Exception:
        raise Fail("error body is not XML: %r" % body[:300])
    out = {}
    for tag in ("Code", "Message", "RequestId", "HostId"):
        nodes = d.getElementsByTagName(tag)
        out[tag] = nodes[0].firstChild.data if nodes and nodes[0].firstChild else None
    expect(all(out.values()), "error body lacks one of Code/Message/RequestId/HostId: %r" % body[:300])
    return out["Code"]


def http_date(offset_s):
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + offset_s))


@check("raw/date_10_minutes_old_accepted")
def _():
    mkq("raw")
    status, _ct, body = raw_get("/queues/%s" % qname("raw"), date=http_date(-600))
    expect(status == 200, "status %s: %s" % (status, body[:300]))


@check("raw/date_20_minutes_old_time_expired_408")
def _():
    status, ct, body = raw_get("/queues/%s" % qname("raw"), date=http_date(-1200))
    expect(status == 408, "status %s, expected 408: %s" % (status, body[:300]))
    expect(ct.startswith("text/xml"), "Content-Type %r" % ct)
    code = error_code(body)
    expect(code == "TimeExpired", "code %r" % code)


@check("raw/garbage_authorization_400")
def _():
    status, _ct, body = raw_get("/queues/%s" % qname("raw"), auth="Basic Zm9vOmJhcg==")
    expect(status == 400, "status %s, expected 400: %s" % (status, body[:300]))
    code = error_code(body)
    expect(code == "InvalidAuthorizationHeader", "code %r" % code)


@check("raw/missing_authorization_400")
def _():
    status, _ct, body = raw_get("/queues/%s" % qname("raw"), auth=None)
    expect(status == 400, "status %s, expected 400: %s" % (status, body[:300]))
    code = error_code(body)
    expect(code == "MissingAuthorizationHeader", "code %r" % code)


# ---------------------------------------------------------------------------------------------

@check("cleanup/delete_every_queue_of_this_run")
def _():
    problems = []
    for account, name in reversed(created):
        try:
            account.get_queue(name).delete()
        except MNSServerException as e:
            if e.type not in ("QueueNotExist", "InvalidQueueName"):
                problems.append("%s: %s" % (name, e.type))
        except Exception as e:
            problems.append("%s: %s" % (name, describe(e)))
    expect(not problems, "; ".join(problems))
    left = acc.list_queue(prefix=PFX)[0] + other.list_queue(prefix=PFX)[0]
    expect(left == [], "queues left: %r" % left)


def main():
    for name, fn in CHECKS:
        try:
            fn()
            report(name, True)
        except Fail as e:
            report(name, False, e)
        except Exception as e:
            report(name, False, describe(e))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
