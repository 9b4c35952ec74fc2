#!/usr/bin/env python3
"""Real-client conformance for qgate's Huawei Cloud DMS (queue API) dialect, driven through the
official Python SDK `huaweicloudsdkdms` 3.1.42 (+ `huaweicloudsdkcore`).

Environment:
  QGATE_BASE       http://host:port (no trailing slash, no path)
  QGATE_AK/SK      an access key pair of tenant A
  QGATE_PROJECT    tenant A's project id (32 hex); always given, so the SDK never calls IAM
  QGATE_OTHER_AK/QGATE_OTHER_SK  a pair of a second tenant (default other-ak / other-sk)
  QGATE_OTHER_PROJECT            optional: tenant B's project id (makes the cross-tenant check
                                 prove that B's key itself is valid before it is refused on A's project)

Output: one line per check, `PASS <name>` or `FAIL <name>: <reason>`; exit status 1 if any failed.

Everything goes through `DmsClient` / `DmsAsyncClient` built with
`.with_credentials(BasicCredentials(ak, sk, project_id)).with_endpoint(QGATE_BASE)`. The SDK's own
knobs produce the auth edge cases (a preset stale `X-Sdk-Date`, `HttpConfig.signing_algorithm`,
`ignore_content_type_for_get_request`, `HttpConfig.user_agent`), and the documented /v1.0 paths are
reached with the client's generic `call_api` (same signer, same HTTP stack). Where the SDK model drops
a field (the `tags` beside `message` in a consume answer) the check reads the response's
`raw_content`, which the SDK keeps on every response object.

The slow lease-expiry scenarios (ack_wait 15 s, the minimum) run in threads alongside the rest.
"""
import json
import os
import random
import string
import sys
import threading
import time
import traceback
import uuid

OUT = sys.stdout
_lock = threading.Lock()
failed = 0
reported = 0


def report(name, ok, why=""):
    global failed, reported
    with _lock:
        reported += 1
        if ok:
            line = "PASS " + name
        else:
            failed += 1
            line = "FAIL %s: %s" % (name, " ".join(str(why).split())[:700])
        OUT.write(line + "\n")
        OUT.flush()


try:
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.exceptions.exceptions import SdkException, ServiceResponseException
    from huaweicloudsdkcore.http.http_config import HttpConfig
    from huaweicloudsdkcore.signer.algorithm import SigningAlgorithm
    from huaweicloudsdkdms.v2 import (
        BatchCreateOrDeleteQueueTagRequest,
        BatchCreateOrDeleteTagReq,
        BatchCreateOrDeleteTagReqTags,
        ConfirmConsumptionMessagesReq,
        ConfirmConsumptionMessagesRequest,
        ConfirmDeadLettersMessagesReq,
        ConfirmDeadLettersMessagesRequest,
        ConfirmMessageEntity,
        ConsumeDeadlettersMessageRequest,
        ConsumeMessagesRequest,
        CreateConsumerGroupReq,
        CreateConsumerGroupRequest,
        CreateQueueReq,
        CreateQueueRequest,
        DeleteQueueRequest,
        DeleteSpecifiedConsumerGroupRequest,
        DmsAsyncClient,
        DmsClient,
        GroupEntity,
        ListConsumerGroupsRequest,
        ListQueuesRequest,
        SendMessageEntity,
        SendMessagesReq,
        SendMessagesRequest,
        ShowQueueProjectTagsRequest,
        ShowQueueRequest,
        ShowQueueTagsRequest,
        ShowQuotasRequest,
    )
except Exception as e:  # the SDK is not installed
    report("import huaweicloudsdkdms 3.1.42", False, repr(e))
    sys.exit(1)

BASE = os.environ.get("QGATE_BASE", "http://127.0.0.1:8080").rstrip("/")
AK = os.environ.get("QGATE_AK", "demo-ak")
SK = os.environ.get("QGATE_SK", "demo-sk")
PROJECT = os.environ.get("QGATE_PROJECT", "")
OTHER_AK = os.environ.get("QGATE_OTHER_AK", "other-ak")
OTHER_SK = os.environ.get("QGATE_OTHER_SK", "other-sk")
OTHER_PROJECT = os.environ.get("QGATE_OTHER_PROJECT", "")
RUN = "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(6))
PFX = "dms-" + RUN

if not PROJECT:
    # Without a project id the SDK would call IAM (and then leave `{project_id}` in the path).
    report("environment: QGATE_PROJECT is set", False, "QGATE_PROJECT (tenant A's 32-hex project id) is required")
    sys.exit(1)


class Fail(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise Fail(msg)


S = {}  # state shared between checks (queue ids, group ids, handlers)
CREATED = []  # queue ids of this run, for the cleanup
_created_lock = threading.Lock()


def need(*keys):
    for k in keys:
        if S.get(k) is None:
            raise Fail("prerequisite missing: %s (an earlier step failed)" % k)
    return [S[k] for k in keys] if len(keys) > 1 else S[keys[0]]


def describe(e):
    if isinstance(e, ServiceResponseException):
        return "HTTP %s error_code=%r error_msg=%r request_id=%r" % (
            e.status_code, e.error_code, str(e.error_msg)[:300], e.request_id)
    if isinstance(e, SdkException):
        return "%s: %s" % (type(e).__name__, str(e.error_msg)[:400])
    return "%s: %s" % (type(e).__name__, str(e)[:400])


def run(name, fn, *args, **kwargs):
    """Runs one check; whatever happens, exactly one PASS/FAIL line is printed."""
    try:
        fn(*args, **kwargs)
    except Fail as e:
        report(name, False, str(e))
        return False
    except ServiceResponseException as e:
        report(name, False, "unexpected error answer: " + describe(e))
        return False
    except Exception as e:  # noqa: BLE001 - SDK parse errors, connection errors, bugs
        tb = traceback.extract_tb(e.__traceback__)
        where = " at %s:%s" % (os.path.basename(tb[-1].filename), tb[-1].lineno) if tb else ""
        report(name, False, describe(e) + where)
        return False
    report(name, True)
    return True


# ---------------------------------------------------------------------------------------------
# clients and SDK helpers

def mk_config(**kw):
    cfg = HttpConfig.get_default_config()
    cfg.timeout = (10, 70)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def mk_client(ak=AK, sk=SK, project=PROJECT, preset=None, klass=DmsClient, **cfg):
    c = (klass.new_builder()
         .with_http_config(mk_config(**cfg))
         .with_credentials(BasicCredentials(ak, sk, project))
         .with_endpoint(BASE)
         .build())
    if preset:
        c.preset_headers.update(preset)
    return c


C = mk_client()


def expect_err(fn, status, codes=None, what=""):
    """Calls fn, which must raise a service error with `status` (int or tuple) and, if given, one of
    `codes` (compared as strings, since `error_code` is whatever JSON type the server sent)."""
    try:
        r = fn()
    except ServiceResponseException as e:
        statuses = status if isinstance(status, (tuple, list)) else (status,)
        ok_status = e.status_code in statuses
        ok_code = codes is None or str(e.error_code) in [str(c) for c in (codes if isinstance(codes, (list, tuple)) else [codes])]
        expect(ok_status and ok_code, "%sexpected HTTP %s %s, got %s" % (
            what + ": " if what else "", "/".join(map(str, statuses)), codes or "", describe(e)))
        return e
    raise Fail("%sexpected HTTP %s %s, but the call succeeded (status %s, body %s)" % (
        what + ": " if what else "", status, codes or "", getattr(r, "status_code", "?"),
        (getattr(r, "raw_content", b"") or b"")[:200]))


def expect_status(resp, status, what):
    expect(resp.status_code == status, "%s answered HTTP %s, want %s" % (what, resp.status_code, status))


def create_queue(suffix, mode=None, redrive=None, mcc=None, desc=None, retention=None, c=None, track=True):
    name = "%s-%s" % (PFX, suffix)
    r = (c or C).create_queue(CreateQueueRequest(body=CreateQueueReq(
        name=name, queue_mode=mode, description=desc, redrive_policy=redrive, max_consume_count=mcc,
        retention_hours=retention)))
    if track and r.id:
        with _created_lock:
            CREATED.append(r.id)
    return r


def create_groups(qid, names, c=None):
    return (c or C).create_consumer_group(CreateConsumerGroupRequest(
        queue_id=qid, body=CreateConsumerGroupReq(groups=[GroupEntity(name=n) for n in names])))


def list_groups(qid, c=None, **kw):
    return (c or C).list_consumer_groups(ListConsumerGroupsRequest(queue_id=qid, **kw))


def send(qid, msgs, return_id=True, c=None):
    ents = [SendMessageEntity(**m) for m in msgs]
    return (c or C).send_messages(SendMessagesRequest(queue_id=qid, body=SendMessagesReq(return_id=return_id,
                                                                                        messages=ents)))


def consume(qid, gid, c=None, **kw):
    """Returns (entries, response); entries is [] when the SDK gave body None (an empty answer)."""
    kw.setdefault("time_wait", 1)
    r = (c or C).consume_messages(ConsumeMessagesRequest(queue_id=qid, consumer_group_id=gid, **kw))
    return (r.body or []), r


def consume_dl(qid, gid, c=None, **kw):
    kw.setdefault("time_wait", 1)
    r = (c or C).consume_deadletters_message(ConsumeDeadlettersMessageRequest(queue_id=qid, consumer_group_id=gid,
                                                                              **kw))
    return (r.body or []), r


def ents(pairs):
    out = []
    for p in pairs:
        if isinstance(p, tuple):
            out.append(ConfirmMessageEntity(handler=p[0], status=p[1]))
        else:
            out.append(ConfirmMessageEntity(handler=p))
    return out


def ack(qid, gid, pairs, c=None):
    return (c or C).confirm_consumption_messages(ConfirmConsumptionMessagesRequest(
        queue_id=qid, consumer_group_id=gid, body=ConfirmConsumptionMessagesReq(message=ents(pairs))))


def ack_dl(qid, gid, pairs, c=None):
    return (c or C).confirm_dead_letters_messages(ConfirmDeadLettersMessagesRequest(
        queue_id=qid, consumer_group_id=gid, body=ConfirmDeadLettersMessagesReq(message=ents(pairs))))


def key(entry):
    """The test id of a consumed message: every body this suite sends is {"k": <id>, ...}."""
    m = entry.message
    b = m.body if m is not None else None
    return b.get("k") if isinstance(b, dict) else repr(b)


def keys(entries):
    return [key(e) for e in entries]


def handlers(entries):
    return {key(e): e.handler for e in entries}


def msg(k, tags=None, attributes=None, delay=None, **extra):
    body = {"k": k, "run": RUN}
    body.update(extra)
    m = {"body": body}
    if tags is not None:
        m["tags"] = tags
    if attributes is not None:
        m["attributes"] = attributes
    if delay is not None:
        m["delay_time"] = delay
    return m


def expect_ack(r, success, fail, what="ack"):
    expect((r.success, r.fail) == (success, fail),
           "%s answered success=%r fail=%r, want success=%d fail=%d (raw %s)" % (
               what, r.success, r.fail, success, fail, (r.raw_content or b"")[:200]))


def expect_ack_refused(fn, what, codes=("10542209", "10540004")):
    """A handler that must not be honoured: either counted as failed (200, success 0 fail 1) or the
    request refused with 400 (Huawei's documents describe both)."""
    try:
        r = fn()
    except ServiceResponseException as e:
        expect(e.status_code == 400 and str(e.error_code) in codes,
               "%s: refused with %s, want 400 %s or a 200 counting it failed" % (what, describe(e), "/".join(codes)))
        return
    expect((r.success, r.fail) == (0, 1), "%s: answered success=%r fail=%r, want success=0 fail=1" % (
        what, r.success, r.fail))


def drain(qid, gid, rounds=4, **kw):
    """Consumes until an empty answer; returns all entries."""
    out = []
    for _ in range(rounds):
        got, _r = consume(qid, gid, **kw)
        if not got:
            break
        out.extend(got)
    return out


def raw_json(resp):
    return json.loads((resp.raw_content or b"null").decode("utf-8"))


def canon(v):
    return json.dumps(v, sort_keys=True, default=float, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# AUTH

def t_auth_ok():
    r = C.list_queues(ListQueuesRequest())
    expect_status(r, 200, "list_queues")
    expect(isinstance(r.total, int) and isinstance(r.queues, list),
           "total/queues missing: %s" % (r.raw_content or b"")[:200])
    expect(r.total == len(r.queues), "total %s != len(queues) %s" % (r.total, len(r.queues)))


def t_auth_async():
    ac = mk_client(klass=DmsAsyncClient)
    r = ac.list_queues_async(ListQueuesRequest(include_deadletter=True)).result()
    expect_status(r, 200, "list_queues_async")
    expect(isinstance(r.queues, list), "no queues list: %s" % (r.raw_content or b"")[:200])


def t_auth_wrong_sk():
    bad = mk_client(sk=SK + "x")
    e = expect_err(lambda: bad.list_queues(ListQueuesRequest()), 401, "APIGW.0301")
    expect(e.request_id, "no X-Request-Id on the 401")
    expect(e.error_msg, "empty error_msg")


def t_auth_unknown_ak():
    bad = mk_client(ak="no-such-ak-" + RUN)
    expect_err(lambda: bad.list_queues(ListQueuesRequest()), 401, "APIGW.0301")


def t_auth_stale_date():
    stale = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 20 * 60))
    c = mk_client(preset={"X-Sdk-Date": stale})  # the SDK signs a preset X-Sdk-Date as-is
    expect_err(lambda: c.list_queues(ListQueuesRequest()), 401, "APIGW.0301", "X-Sdk-Date 20 min old")
    future = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() + 20 * 60))
    c2 = mk_client(preset={"X-Sdk-Date": future})
    expect_err(lambda: c2.list_queues(ListQueuesRequest()), 401, "APIGW.0301", "X-Sdk-Date 20 min ahead")
    near = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 5 * 60))
    r = mk_client(preset={"X-Sdk-Date": near}).list_queues(ListQueuesRequest())
    expect_status(r, 200, "X-Sdk-Date 5 min old (inside the 15 min window)")


def t_auth_sm3():
    c = mk_client(signing_algorithm=SigningAlgorithm.HMAC_SM3)  # Authorization: SDK-HMAC-SM3 ...
    expect_err(lambda: c.list_queues(ListQueuesRequest()), 401, "APIGW.0301")


def t_auth_no_content_type():
    c = mk_client(ignore_content_type_for_get_request=True)  # SignedHeaders=host;user-agent;x-project-id;x-sdk-date
    r = c.list_queues(ListQueuesRequest())
    expect_status(r, 200, "GET without Content-Type")
    r = c.show_quotas(ShowQuotasRequest())
    expect_status(r, 200, "show_quotas without Content-Type")


def t_auth_utf8_header():
    # HttpConfig.user_agent is appended verbatim; the signer hashes its UTF-8 bytes and sends those raw bytes.
    c = mk_client(user_agent="qgate-suite \u00fc\u6d4b\u8bd5")
    r = c.list_queues(ListQueuesRequest())
    expect_status(r, 200, "list_queues with a UTF-8 User-Agent")


def t_auth_cross_tenant():
    qid = need("q_main")
    if OTHER_PROJECT:
        r = mk_client(OTHER_AK, OTHER_SK, OTHER_PROJECT).list_queues(ListQueuesRequest())
        expect_status(r, 200, "tenant B on its own project")
        expect(qid not in [q.id for q in (r.queues or [])], "tenant B's own list shows tenant A's queue")
    b = mk_client(OTHER_AK, OTHER_SK, PROJECT)
    refused = (400, 401, 403, 404)
    expect_err(lambda: b.list_queues(ListQueuesRequest()), refused, what="B lists A's project")
    expect_err(lambda: b.show_queue(ShowQueueRequest(queue_id=qid)), refused, what="B shows A's queue")
    expect_err(lambda: send(qid, [msg("intruder")], c=b), refused, what="B sends to A's queue")
    expect_err(lambda: b.delete_queue(DeleteQueueRequest(queue_id=qid)), refused, what="B deletes A's queue")
    r = C.show_queue(ShowQueueRequest(queue_id=qid))
    expect(r.id == qid, "tenant A's queue is gone after B's delete attempt")


def t_auth_unknown_project():
    expect_status(C.list_queues(ListQueuesRequest()), 200, "precondition: the key on its own project")
    c = mk_client(project=uuid.uuid4().hex)
    expect_err(lambda: c.list_queues(ListQueuesRequest()), (400, 401, 403, 404), what="valid key, unknown project")


# ---------------------------------------------------------------------------------------------
# QUEUES

def t_create_main():
    r = create_queue("main", mode="NORMAL", desc="qgate dms suite")
    expect_status(r, 201, "create_queue")
    expect(r.id and r.name == PFX + "-main", "id/name: %r/%r" % (r.id, r.name))
    expect(r.kafka_topic is None, "kafka_topic on a NORMAL queue: %r" % r.kafka_topic)
    S["q_main"] = r.id


def t_create_fifo():
    r = create_queue("fifo", mode="FIFO", redrive="enable", mcc=3)
    expect_status(r, 201, "create_queue FIFO")
    expect(r.id, "no id")
    S["q_fifo"] = r.id


def t_create_dlq():
    r = create_queue("dlq", redrive="enable", mcc=2)
    expect_status(r, 201, "create_queue with redrive")
    S["q_dlq"] = r.id


def t_create_default_mode():
    r = create_queue("plain")  # queue_mode omitted -> NORMAL
    S["q_misc"] = r.id
    s = C.show_queue(ShowQueueRequest(queue_id=r.id))
    expect(s.queue_mode == "NORMAL", "default queue_mode %r, want NORMAL" % s.queue_mode)


def t_create_kafka():
    r = create_queue("kafka", mode="KAFKA_HA", retention=24)
    expect_status(r, 201, "create_queue KAFKA_HA")
    expect(r.kafka_topic, "no kafka_topic for a Kafka queue")
    s = C.show_queue(ShowQueueRequest(queue_id=r.id))
    expect(s.reservation == 24 * 60, "reservation %r, want 1440 (retention_hours*60)" % s.reservation)
    expect(s.kafka_topic == r.kafka_topic, "show kafka_topic %r != create %r" % (s.kafka_topic, r.kafka_topic))


def t_create_dup():
    need("q_main")
    expect_err(lambda: create_queue("main"), 400, "10240017")


def t_create_bad_name():
    expect_err(lambda: C.create_queue(CreateQueueRequest(body=CreateQueueReq(name=PFX + "-bad name!"))),
               400, "10240007")


def t_create_long_name():
    expect_err(lambda: C.create_queue(CreateQueueRequest(body=CreateQueueReq(name="n" * 65))), 400, "10240011")


def t_create_long_desc():
    expect_err(lambda: create_queue("desc", desc="d" * 161), 400, "10240013")


def t_create_bad_mcc():
    expect_err(lambda: create_queue("mcc0", redrive="enable", mcc=0), 400, "10240022", "max_consume_count 0")
    expect_err(lambda: create_queue("mcc101", redrive="enable", mcc=101), 400, "10240022", "max_consume_count 101")


def t_create_retention_normal():
    expect_err(lambda: create_queue("ret", mode="NORMAL", retention=24), 400, "10240028")


def t_create_retention_range():
    expect_err(lambda: create_queue("ret73", mode="KAFKA_HA", retention=73), 400, "10240027")


def _queue_common(q, what):
    expect(q.queue_mode in ("NORMAL", "FIFO", "KAFKA_HA", "KAFKA_HT"), "%s queue_mode %r" % (what, q.queue_mode))
    expect(isinstance(q.created, int) and abs(q.created / 1000.0 - time.time()) < 86400,
           "%s created %r is not epoch milliseconds of today" % (what, q.created))
    expect(isinstance(q.eff_date, int), "%s eff_date %r not an int" % (what, q.eff_date))
    expect(q.max_msg_size_byte == 524288, "%s max_msg_size_byte %r" % (what, q.max_msg_size_byte))
    expect(isinstance(q.produced_messages, int), "%s produced_messages %r" % (what, q.produced_messages))
    expect(isinstance(q.group_count, int), "%s group_count %r" % (what, q.group_count))


def t_list_queues():
    qm, qf = need("q_main", "q_fifo")
    r = C.list_queues(ListQueuesRequest(include_deadletter=False))
    expect_status(r, 200, "list_queues")
    byid = {q.id: q for q in (r.queues or [])}
    expect(qm in byid and qf in byid, "run's queues missing from the list")
    expect(r.total == len(r.queues), "total %s != len(queues) %s" % (r.total, len(r.queues)))
    m = byid[qm]
    expect(m.name == PFX + "-main" and m.description == "qgate dms suite", "name/description %r/%r" % (
        m.name, m.description))
    expect(m.queue_mode == "NORMAL" and byid[qf].queue_mode == "FIFO", "modes %r/%r" % (
        m.queue_mode, byid[qf].queue_mode))
    expect(m.reservation == 4320, "reservation %r, want 4320" % m.reservation)
    _queue_common(m, "list")
    expect(byid[qf].redrive_policy is None and byid[qf].max_consume_count is None,
           "redrive fields present without include_deadletter: %r/%r" % (byid[qf].redrive_policy,
                                                                          byid[qf].max_consume_count))


def t_list_queues_dl():
    qm, qd = need("q_main", "q_dlq")
    r = C.list_queues(ListQueuesRequest(include_deadletter=True))
    byid = {q.id: q for q in (r.queues or [])}
    expect(qm in byid and qd in byid, "run's queues missing")
    expect(byid[qd].redrive_policy == "enable" and byid[qd].max_consume_count == 2,
           "dlq queue redrive %r/%r" % (byid[qd].redrive_policy, byid[qd].max_consume_count))
    expect(byid[qm].redrive_policy == "disable", "plain queue redrive_policy %r, want disable" % byid[qm].redrive_policy)


def t_show_queue():
    qm = need("q_main")
    r = C.show_queue(ShowQueueRequest(queue_id=qm))
    expect_status(r, 200, "show_queue")
    expect(r.id == qm and r.name == PFX + "-main" and r.description == "qgate dms suite",
           "id/name/description: %r %r %r" % (r.id, r.name, r.description))
    expect(r.queue_mode == "NORMAL" and r.reservation == 4320, "mode/reservation %r/%r" % (r.queue_mode, r.reservation))
    _queue_common(r, "show")
    expect(r.group_count == 2, "group_count %r, want 2" % r.group_count)
    expect(r.redrive_policy is None, "redrive_policy without include_deadletter: %r" % r.redrive_policy)


def t_show_queue_dl():
    qf = need("q_fifo")
    r = C.show_queue(ShowQueueRequest(queue_id=qf, include_deadletter=True))
    expect(r.queue_mode == "FIFO" and r.redrive_policy == "enable" and r.max_consume_count == 3,
           "mode/redrive/mcc %r/%r/%r" % (r.queue_mode, r.redrive_policy, r.max_consume_count))


def t_unknown_queue():
    ghost = str(uuid.uuid4())
    calls = [
        ("show_queue", lambda: C.show_queue(ShowQueueRequest(queue_id=ghost))),
        ("delete_queue", lambda: C.delete_queue(DeleteQueueRequest(queue_id=ghost))),
        ("list_consumer_groups", lambda: list_groups(ghost)),
        ("create_consumer_group", lambda: create_groups(ghost, ["g1"])),
        ("send_messages", lambda: send(ghost, [msg("x")])),
        ("consume_messages", lambda: consume(ghost, "g-" + str(uuid.uuid4()))),
        ("confirm_consumption_messages", lambda: ack(ghost, "g-" + str(uuid.uuid4()), [("aGFuZGxlcg", "success")])),
        ("consume_deadletters_message", lambda: consume_dl(ghost, "g-" + str(uuid.uuid4()))),
        ("show_queue_tags", lambda: C.show_queue_tags(ShowQueueTagsRequest(queue_id=ghost))),
    ]
    bad = []
    for name, fn in calls:
        try:
            e = expect_err(fn, 404, "10240401", name)
            if name == "show_queue":
                expect(e.request_id, "no X-Request-Id on the 404")
                expect(e.error_msg and e.error_msg != e.error_code, "no error_msg on the 404")
        except Fail as f:
            bad.append(str(f))
    expect(not bad, "; ".join(bad))


def t_delete_queue():
    r = create_queue("del1")
    d = C.delete_queue(DeleteQueueRequest(queue_id=r.id))
    expect_status(d, 204, "delete_queue")
    expect(not d.raw_content, "204 with a body: %r" % d.raw_content[:100])
    expect_err(lambda: C.show_queue(ShowQueueRequest(queue_id=r.id)), 404, "10240401", "show after delete")
    expect_err(lambda: C.delete_queue(DeleteQueueRequest(queue_id=r.id)), 404, "10240401", "delete twice")
    r2 = C.list_queues(ListQueuesRequest())
    expect(r.id not in [q.id for q in (r2.queues or [])], "deleted queue still listed")


def t_delete_wakes_poll():
    qid = need("q_del")
    gid = need("g_del")
    out = {}

    def poll():
        t0 = time.time()
        try:
            consume(qid, gid, c=mk_client(), time_wait=12)
            out["result"] = "returned normally"
        except ServiceResponseException as e:
            out["result"] = e
        except Exception as e:  # noqa: BLE001
            out["result"] = "%s" % describe(e)
        out["elapsed"] = time.time() - t0

    th = threading.Thread(target=poll)
    th.start()
    time.sleep(1.0)
    d = C.delete_queue(DeleteQueueRequest(queue_id=qid))
    expect_status(d, 204, "delete_queue")
    th.join(20)
    res = out.get("result")
    expect(isinstance(res, ServiceResponseException) and res.status_code == 404 and str(res.error_code) == "10240401",
           "long poll on a deleted queue ended with %s, want 404 10240401" % (
               describe(res) if isinstance(res, Exception) else res))
    expect(out["elapsed"] < 6, "long poll ended %.1f s after start (time_wait 12): not woken by the delete" %
           out["elapsed"])


# ---------------------------------------------------------------------------------------------
# GROUPS

def t_groups_create_two():
    qid = need("q_main")
    r = create_groups(qid, ["ga", "gb"])
    expect_status(r, 201, "create_consumer_group")
    gs = r.groups or []
    expect([g.name for g in gs] == ["ga", "gb"], "names %r" % [g.name for g in gs])
    expect(all(g.id for g in gs) and gs[0].id != gs[1].id, "ids %r" % [g.id for g in gs])
    S["g_a"], S["g_b"] = gs[0].id, gs[1].id


def t_groups_list():
    qid, ga, gb = need("q_main", "g_a", "g_b")
    r = list_groups(qid)
    expect_status(r, 200, "list_consumer_groups")
    expect(r.queue_id == qid and r.queue_name == PFX + "-main", "queue_id/name %r/%r" % (r.queue_id, r.queue_name))
    byid = {g.id: g for g in (r.groups or [])}
    expect(set(byid) == {ga, gb}, "group ids %r" % list(byid))
    expect(byid[ga].name == "ga" and byid[gb].name == "gb", "names")
    for g in byid.values():
        for f in ("produced_messages", "consumed_messages", "available_messages"):
            expect(getattr(g, f) == 0, "%s.%s = %r, want 0 on a fresh queue" % (g.name, f, getattr(g, f)))
    expect(r.redrive_policy is None, "redrive_policy without include_deadletter: %r" % r.redrive_policy)


def t_groups_limit():
    qid = need("q_grp")
    r = create_groups(qid, ["g1", "g2"])
    expect(len(r.groups or []) == 2, "first two groups not created")
    r = create_groups(qid, ["g3"])
    expect(len(r.groups or []) == 1, "third group not created")
    S["g_grp3"] = r.groups[0].id
    expect_err(lambda: create_groups(qid, ["g4"]), 400, "10240019", "4th group")
    lst = list_groups(qid)
    expect(len(lst.groups or []) == 3, "queue has %d groups after the refused 4th, want 3" % len(lst.groups or []))


def t_groups_four_at_once():
    qid = need("q_del")
    expect_err(lambda: create_groups(qid, ["h1", "h2", "h3", "h4"]), 400, "10240019")
    lst = list_groups(qid)
    expect(not (lst.groups or []), "a refused 4-group request created %d groups" % len(lst.groups or []))


def t_groups_dup():
    qid = need("q_grp")
    expect_err(lambda: create_groups(qid, ["g1"]), 400, ("10240018", "10240019"))
    qid2 = need("q_dlq")
    expect_err(lambda: create_groups(qid2, ["gx"]), 400, "10240018", "duplicate on a queue with room")


def t_groups_bad_name():
    qid = need("q_misc")
    expect_err(lambda: create_groups(qid, ["g" * 33]), 400, "10240012", "33-char name")
    expect_err(lambda: create_groups(qid, ["bad name"]), 400, "10240012", "name with a space")


def t_groups_paging():
    qid = need("q_grp")
    all_ids = [g.id for g in list_groups(qid).groups or []]
    pages = []
    for p in (1, 2, 3):
        r = list_groups(qid, page_size=1, current_page=p)
        expect(len(r.groups or []) == 1, "page %d has %d groups, want 1" % (p, len(r.groups or [])))
        pages.append(r.groups[0].id)
    expect(sorted(pages) == sorted(all_ids), "pages %r do not cover the groups %r" % (pages, all_ids))


def t_groups_delete():
    qid, gid = need("q_grp", "g_grp3")
    d = C.delete_specified_consumer_group(DeleteSpecifiedConsumerGroupRequest(queue_id=qid, group_id=gid))
    expect_status(d, 204, "delete_specified_consumer_group")
    expect(gid not in [g.id for g in list_groups(qid).groups or []], "deleted group still listed")
    expect_err(lambda: C.delete_specified_consumer_group(
        DeleteSpecifiedConsumerGroupRequest(queue_id=qid, group_id=gid)), 404, "10240405", "delete twice")
    r = create_groups(qid, ["g3b"])  # room again
    expect(len(r.groups or []) == 1, "could not create a group after deleting one")


def t_groups_unknown():
    qid = need("q_grp")
    ghost = "g-" + str(uuid.uuid4())
    expect_err(lambda: consume(qid, ghost), 404, "10240405", "consume")
    expect_err(lambda: ack(qid, ghost, [("aGFuZGxlcg", "success")]), 404, "10240405", "ack")
    expect_err(lambda: consume_dl(qid, ghost), 404, "10240405", "consume_deadletters")
    expect_err(lambda: C.delete_specified_consumer_group(
        DeleteSpecifiedConsumerGroupRequest(queue_id=qid, group_id=ghost)), 404, "10240405", "delete")


# ---------------------------------------------------------------------------------------------
# SEND

def t_send_basic():
    qid = need("q_main")
    r = send(qid, [msg("m1", tags=["t1"], attributes={"a1": "v1", "n": 7}),
                   msg("m2", tags=["t1", "t2"], attributes={"a2": "v2"}),
                   msg("m3")])
    expect_status(r, 201, "send_messages")
    ms = r.messages or []
    expect(len(ms) == 3, "%d result entries, want 3" % len(ms))
    expect(all(m.state == 0 for m in ms), "states %r" % [m.state for m in ms])
    ids = [m.id for m in ms]
    expect(all(ids) and len(set(ids)) == 3, "ids %r" % ids)
    expect(all(m.error is None and m.error_code is None for m in ms), "error fields %r" % [
        (m.error, m.error_code) for m in ms])


def t_send_no_return_id():
    qid = need("q_misc")
    r = send(qid, [msg("noid")], return_id=None)  # field omitted
    expect_status(r, 201, "send_messages")
    expect(len(r.messages or []) == 1 and r.messages[0].state == 0, "result %s" % (r.raw_content or b"")[:200])
    expect(r.messages[0].id is None, "id %r returned without return_id" % r.messages[0].id)
    r = send(qid, [msg("noid2")], return_id=False)
    expect(r.messages[0].id is None, "id %r returned with return_id=false" % r.messages[0].id)
    S["misc_prefill"] = ["noid", "noid2"]


def t_send_too_many():
    qid = need("q_misc")
    expect_err(lambda: send(qid, [msg("x%d" % i) for i in range(11)]), 400, "10540010")
    expect_err(lambda: send(qid, []), 400, "10540010", "zero messages")


def t_send_bad_tags():
    qid = need("q_misc")
    expect_err(lambda: send(qid, [msg("x", tags=["a", "b", "c", "d"])]), 400, "10540001", "4 tags")
    expect_err(lambda: send(qid, [msg("x", tags=["bad tag!"])]), 400, "10540001", "bad tag chars")
    expect_err(lambda: send(qid, [msg("x", tags=["t" * 65])]), 400, "10540001", "65-char tag")


def t_send_too_big():
    qid = need("q_misc")
    expect_err(lambda: send(qid, [{"body": "x" * (530 * 1024)}]), 400, "10540011")


def t_send_bad_delay():
    qid = need("q_misc")
    expect_err(lambda: send(qid, [msg("x", delay=604800001)]), 400, "10540010")


def t_send_no_body():
    qid = need("q_misc")
    expect_err(lambda: send(qid, [{"attributes": {"a": "b"}}]), 400, ("10540001", "10540010", "10540012"))


# ---------------------------------------------------------------------------------------------
# CONSUME (fan-out, tags in both places, leases, ack)

def t_fanout():
    qid, ga, gb = need("q_main", "g_a", "g_b")
    got_a, ra = consume(qid, ga, max_msgs=10)
    got_b, rb = consume(qid, gb, max_msgs=10)
    expect_status(ra, 200, "consume_messages")
    expect(sorted(keys(got_a)) == ["m1", "m2", "m3"], "group ga got %r" % keys(got_a))
    expect(sorted(keys(got_b)) == ["m1", "m2", "m3"], "group gb got %r" % keys(got_b))
    S["main_a"] = got_a
    S["main_a_raw"] = ra
    S["main_b"] = got_b
    for e in got_a:
        expect(isinstance(e.handler, str) and e.handler, "empty handler")
    expect(not (set(e.handler for e in got_a) & set(e.handler for e in got_b)), "groups share handlers")


def t_fanout_fields():
    got = need("main_a")
    by = {key(e): e.message for e in got}
    expect(by["m1"].attributes == {"a1": "v1", "n": 7}, "m1 attributes %r" % by["m1"].attributes)
    expect(by["m2"].attributes == {"a2": "v2"}, "m2 attributes %r" % by["m2"].attributes)
    expect(by["m1"].body == {"k": "m1", "run": RUN}, "m1 body %r" % by["m1"].body)
    expect(not by["m3"].attributes, "m3 attributes %r" % by["m3"].attributes)


def t_tags_inside():
    got = need("main_a")
    by = {key(e): e.message for e in got}
    expect(by["m1"].tags == ["t1"], "m1 message.tags %r" % by["m1"].tags)
    expect(sorted(by["m2"].tags or []) == ["t1", "t2"], "m2 message.tags %r" % by["m2"].tags)
    expect(not by["m3"].tags, "untagged m3 message.tags %r" % by["m3"].tags)


def t_tags_beside():
    # The SDK model (ConsumeMessage) has no sibling `tags`; read the raw answer the SDK kept.
    resp = need("main_a_raw")
    raw = raw_json(resp)
    expect(isinstance(raw, list), "consume answer is not a bare JSON array: %s" % str(raw)[:200])
    for e in raw:
        k = (e.get("message") or {}).get("body", {}).get("k")
        if k in ("m1", "m2"):
            expect(sorted(e.get("tags") or []) == sorted(e["message"].get("tags") or []) and e.get("tags"),
                   "%s: tags beside message %r, inside %r" % (k, e.get("tags"), e["message"].get("tags")))


def t_lease_same_group():
    qid, ga = need("q_main", "g_a")
    need("main_a")
    got, _ = consume(qid, ga, max_msgs=10, time_wait=1)
    expect(not got, "leased messages handed out again to the same group: %r" % keys(got))


def t_ack_all():
    qid, ga = need("q_main", "g_a")
    got = need("main_a")
    r = ack(qid, ga, [(e.handler, "success") for e in got])
    expect_status(r, 200, "confirm_consumption_messages")
    expect_ack(r, 3, 0)
    got2, _ = consume(qid, ga, time_wait=1)
    expect(not got2, "acked messages delivered again: %r" % keys(got2))


def t_counters():
    qid, ga, gb = need("q_main", "g_a", "g_b")
    need("main_b")
    r = list_groups(qid, include_messages_num=True)
    byid = {g.id: g for g in r.groups or []}
    a, b = byid.get(ga), byid.get(gb)
    expect(a and b, "groups missing from the list")
    expect((a.produced_messages, a.consumed_messages, a.available_messages) == (3, 3, 0),
           "ga produced/consumed/available %r/%r/%r, want 3/3/0" % (
               a.produced_messages, a.consumed_messages, a.available_messages))
    expect((b.produced_messages, b.consumed_messages, b.available_messages) == (3, 0, 3),
           "gb produced/consumed/available %r/%r/%r, want 3/0/3 (in flight counts as available)" % (
               b.produced_messages, b.consumed_messages, b.available_messages))
    s = C.show_queue(ShowQueueRequest(queue_id=qid))
    expect(s.produced_messages == 3, "queue produced_messages %r, want 3 (kept after acks)" % s.produced_messages)


def t_max_msgs_one():
    qid = need("q_ack")
    g2 = need("g_k2")
    got, _ = consume(qid, g2, max_msgs=1)
    expect(len(got) == 1, "max_msgs=1 gave %d messages" % len(got))
    S["k2_handler"] = got[0].handler
    got2, _ = consume(qid, g2, max_msgs=2)
    expect(len(got2) == 2, "max_msgs=2 gave %d messages (3 sent, 1 leased)" % len(got2))


def t_empty():
    qid, gid = need("q_misc", "g_m")
    prefill = S.get("misc_prefill") or []
    drained = drain(qid, gid, max_msgs=10)
    expect(sorted(keys(drained)) == sorted(prefill), "drained %r, want %r" % (keys(drained), prefill))
    if drained:
        ack(qid, gid, [e.handler for e in drained])
    t0 = time.time()
    got, r = consume(qid, gid, time_wait=2)
    el = time.time() - t0
    expect_status(r, 200, "empty consume")
    expect(r.body is None and not got, "empty consume body %r" % r.body)
    expect((r.raw_content or b"").strip() == b"[]", "empty consume raw answer %r, want []" % (r.raw_content or b"")[:100])
    expect(el >= 1.6, "empty consume with time_wait=2 returned after %.2f s" % el)
    expect(el < 6, "empty consume with time_wait=2 took %.2f s" % el)


def t_long_poll():
    qid, gid = need("q_misc", "g_m")
    out = {}

    def poll():
        t0 = time.time()
        try:
            out["got"] = consume(qid, gid, c=mk_client(), time_wait=10, max_msgs=10)[0]
        except Exception as e:  # noqa: BLE001
            out["err"] = describe(e)
        out["elapsed"] = time.time() - t0

    th = threading.Thread(target=poll)
    th.start()
    time.sleep(1.0)
    send(qid, [msg("lp")])
    th.join(20)
    expect("err" not in out, "long poll failed: %s" % out.get("err"))
    expect(keys(out.get("got") or []) == ["lp"], "long poll got %r" % keys(out.get("got") or []))
    expect(out["elapsed"] < 5, "long poll returned after %.1f s (message sent after 1 s, time_wait 10)" %
           out["elapsed"])
    ack(qid, gid, [e.handler for e in out["got"]])


def t_delay():
    qid, gid = need("q_misc", "g_m")
    t0 = time.time()
    send(qid, [msg("delayed", delay=3000)])
    got, _ = consume(qid, gid, time_wait=1)
    expect("delayed" not in keys(got), "delayed message delivered at once")
    got, _ = consume(qid, gid, time_wait=6)
    el = time.time() - t0
    expect(keys(got) == ["delayed"], "after the delay got %r" % keys(got))
    expect(el >= 2.5, "delayed (3000 ms) message delivered after %.2f s" % el)
    ack(qid, gid, [e.handler for e in got])


def t_bodies():
    qid, gid = need("q_misc", "g_m")
    cases = [
        {"k": "uni", "text": "\u6d88\u606f \u00fc \U0001f600", "n": 1, "f": 1.5, "nested": {"l": [1, "2", None, True]}},
        "plain string body",
        [1, 2, "three"],
        42,
    ]
    send(qid, [{"body": b, "attributes": {"\u5c5e\u6027": "\u503c", "num": 3}} for b in cases])
    got = drain(qid, gid, max_msgs=10)
    bodies = sorted(canon(e.message.body) for e in got)
    expect(bodies == sorted(canon(b) for b in cases), "bodies %r, want %r" % (bodies, [canon(b) for b in cases]))
    for e in got:
        expect(e.message.attributes == {"\u5c5e\u6027": "\u503c", "num": 3}, "attributes %r" % e.message.attributes)
    ack(qid, gid, [e.handler for e in got])


def t_ranges():
    qid, gid = need("q_misc", "g_m")
    for v in (0, 11):
        expect_err(lambda: consume(qid, gid, max_msgs=v), 400, "10240014", "max_msgs=%d" % v)
    for v in (0, 61):
        expect_err(lambda: consume(qid, gid, time_wait=v), 400, "10240021", "time_wait=%d" % v)
    for v in (14, 301):
        expect_err(lambda: consume(qid, gid, ack_wait=v), 400, "10542206", "ack_wait=%d" % v)
    expect_err(lambda: consume_dl(qid, gid, max_msgs=11), 400, "10240014", "deadletters max_msgs=11")
    expect_err(lambda: consume_dl(qid, gid, time_wait=61), 400, "10240021", "deadletters time_wait=61")
    expect_err(lambda: consume_dl(qid, gid, ack_wait=14), 400, "10542206", "deadletters ack_wait=14")


def t_filter_limits():
    qid, gid = need("q_misc", "g_r")  # g_r has never consumed: no rule yet
    expect_err(lambda: consume(qid, gid, tag=["a", "b", "c", "d"]), 400, what="4 filter tags")
    expect_err(lambda: consume(qid, gid, tag=["t" * 65]), 400, what="65-char filter tag")
    got, r = consume(qid, gid, tag=["only-x"])
    expect_status(r, 200, "a valid filter after the refused ones")


# ---------------------------------------------------------------------------------------------
# ACK rules

def t_ack_batch():
    qid, gk = need("q_ack", "g_k")
    got, _ = consume(qid, gk, max_msgs=10)
    if len(got) < 3:
        got += consume(qid, gk, max_msgs=10)[0]
    h = handlers(got)
    expect(sorted(h) == ["b1", "b2", "b3"], "consumed %r" % sorted(h))
    r = ack(qid, gk, [(h["b1"], "success"), (h["b2"], "fail"), (h["b3"], "success")])
    expect_ack(r, 1, 2, "ack [success, fail, success]")
    again = drain(qid, gk, max_msgs=10)
    expect(sorted(keys(again)) == ["b2", "b3"], "after the batch ack redelivered %r, want b2 and b3" % keys(again))
    expect_ack(ack(qid, gk, [e.handler for e in again]), 2, 0, "acking the redelivered two")


def fresh(qid, gid, k):
    """Sends message k and consumes until it arrives (acking anything else); returns its handler."""
    send(qid, [msg(k)])
    for _ in range(3):
        got, _ = consume(qid, gid, max_msgs=10)
        other = [e.handler for e in got if key(e) != k]
        if other:
            ack(qid, gid, other)
        mine = [e for e in got if key(e) == k]
        if mine:
            return mine[0].handler
    raise Fail("message %s was never delivered" % k)


def t_ack_reused():
    qid, g = need("q_ack2", "g_k3")
    h = fresh(qid, g, "reuse")
    expect_ack(ack(qid, g, [(h, "success")]), 1, 0, "first ack")
    expect_ack_refused(lambda: ack(qid, g, [(h, "success")]), "re-acking an already acked handler")


def t_ack_bad_status():
    qid, g = need("q_ack2", "g_k3")
    h = fresh(qid, g, "badstatus")
    expect_err(lambda: ack(qid, g, [(h, "maybe")]), 400, "10540003")
    expect_ack(ack(qid, g, [(h, "success")]), 1, 0, "the handler after the refused request")


def t_ack_default_status():
    qid, g = need("q_ack2", "g_k3")
    h = fresh(qid, g, "nostatus")
    r = ack(qid, g, [h])  # ConfirmMessageEntity without status: the field is omitted
    expect_ack(r, 1, 0, "ack without status")
    got, _ = consume(qid, g, max_msgs=10)
    expect(not got, "after an ack without status got %r" % keys(got))


def t_no_redrive_redelivery():
    qid, g = need("q_ack2", "g_k3")
    h = fresh(qid, g, "nodlq")
    for i in range(3):
        r = ack(qid, g, [(h, "fail")])
        expect_ack(r, 0, 1, "fail ack #%d" % (i + 1))
        got, _ = consume(qid, g, max_msgs=10)
        expect(keys(got) == ["nodlq"], "after fail #%d got %r, want it again (no redrive: never dead)" % (
            i + 1, keys(got)))
        h = got[0].handler
    expect_ack(ack(qid, g, [(h, "success")]), 1, 0)


def t_ack_forged():
    qid, gk = need("q_ack", "g_k")
    expect_ack_refused(lambda: ack(qid, gk, [("Zm9yZ2VkLWhhbmRsZXI", "success")]), "forged handler")


def t_ack_other_group():
    qid, gk = need("q_ack", "g_k")
    h = need("k2_handler")
    expect_ack_refused(lambda: ack(qid, gk, [(h, "success")]), "handler of another group of the queue")
    hm = (S.get("main_b") or [None])[0]
    expect(hm is not None, "prerequisite missing: main_b")
    expect_ack_refused(lambda: ack(qid, gk, [(hm.handler, "success")]), "handler of another queue")


# ---------------------------------------------------------------------------------------------
# TAG FILTERS

def t_tag_setup():
    qid = need("q_tags")
    r = create_groups(qid, ["gor", "gand", "gall"])
    S["g_or"], S["g_and"], S["g_all"] = [g.id for g in r.groups]
    send(qid, [msg("t1", tags=["a"]), msg("t2", tags=["b"]), msg("t3", tags=["a", "b"]), msg("t4"),
               msg("t5", tags=["c"])])


def t_tag_or():
    qid, g = need("q_tags", "g_or")
    got, r = consume(qid, g, tag=["a", "b"], tag_type="or", max_msgs=10)
    more, _ = consume(qid, g, tag=["a", "b"], tag_type="or", max_msgs=10)
    expect(sorted(keys(got + more)) == ["t1", "t2", "t3"], "or[a,b] got %r, want t1 t2 t3" % keys(got + more))
    S["tags_or_raw"] = r


def t_tag_and():
    qid, g = need("q_tags", "g_and")
    got, _ = consume(qid, g, tag=["a", "b"], tag_type="and", max_msgs=10)
    more, _ = consume(qid, g, tag=["a", "b"], tag_type="and", max_msgs=10)
    expect(sorted(keys(got + more)) == ["t3"], "and[a,b] got %r, want t3" % keys(got + more))


def t_tag_all():
    qid, g = need("q_tags", "g_all")
    got = drain(qid, g, max_msgs=10)
    expect(sorted(keys(got)) == ["t1", "t2", "t3", "t4", "t5"], "unfiltered got %r" % keys(got))


def t_tag_both_places():
    r = need("tags_or_raw")
    raw = raw_json(r)
    expect(isinstance(raw, list) and raw, "no entries")
    for e in raw:
        inside = (e.get("message") or {}).get("tags")
        expect(inside and sorted(e.get("tags") or []) == sorted(inside),
               "entry %s: tags inside %r, beside %r" % ((e.get("message") or {}).get("body"), inside, e.get("tags")))
    for e in r.body or []:
        expect(e.message.tags, "SDK model message.tags empty for %s" % key(e))


def t_tag_rule_change():
    qid, go, ga, gl = need("q_tags", "g_or", "g_and", "g_all")
    expect_err(lambda: consume(qid, go, tag=["a"], tag_type="or"), 400, "10542204", "or[a,b] group asks or[a]")
    expect_err(lambda: consume(qid, ga, tag=["a", "b"], tag_type="or"), 400, "10542204", "and[a,b] group asks or[a,b]")
    expect_err(lambda: consume(qid, gl, tag=["a"]), 400, "10542204", "unfiltered group asks or[a]")


def t_tag_rule_same():
    qid, go, gl = need("q_tags", "g_or", "g_all")
    _, r = consume(qid, go, tag=["b", "a"])  # order swapped, tag_type omitted (= or)
    expect_status(r, 200, "same rule, tags reordered, tag_type omitted")
    _, r = consume(qid, go, tag="b,a", tag_type="or")  # comma-joined single value
    expect_status(r, 200, "same rule as one comma-joined tag value")
    _, r = consume(qid, gl)
    expect_status(r, 200, "unfiltered group again without tags")


def t_tag_later_messages():
    qid, go, ga = need("q_tags", "g_or", "g_and")
    send(qid, [msg("t6", tags=["b", "z"]), msg("t7", tags=["b", "a", "z"])])
    got_or, _ = consume(qid, go, tag=["a", "b"], tag_type="or", max_msgs=10)
    got_and, _ = consume(qid, ga, tag=["a", "b"], tag_type="and", max_msgs=10)
    expect(sorted(keys(got_or)) == ["t6", "t7"], "or group got %r, want t6 t7" % keys(got_or))
    expect(keys(got_and) == ["t7"], "and group got %r, want t7" % keys(got_and))


# ---------------------------------------------------------------------------------------------
# DEAD LETTERS (failed acks; the lease-expiry path runs in a thread)

def t_dl_fail_twice():
    qid, gx, gy = need("q_dlq", "g_x", "g_y")
    send(qid, [msg("d1", tags=["dl"], attributes={"why": "fail twice"})])
    for i in (1, 2):
        got, _ = consume(qid, gx, max_msgs=10)
        expect(keys(got) == ["d1"], "delivery #%d got %r" % (i, keys(got)))
        expect_ack(ack(qid, gx, [(got[0].handler, "fail")]), 0, 1, "fail ack #%d" % i)
        S["dl_normal_handler"] = got[0].handler
    got, _ = consume(qid, gx, max_msgs=10)
    expect(not got, "after max_consume_count=2 failures the message is still delivered: %r" % keys(got))


def t_dl_other_group():
    qid, gy = need("q_dlq", "g_y")
    need("dl_normal_handler")
    got, _ = consume(qid, gy, max_msgs=10)
    expect(keys(got) == ["d1"], "the other group got %r, want d1" % keys(got))
    expect_ack(ack(qid, gy, [got[0].handler]), 1, 0)
    dl, _ = consume_dl(qid, gy)
    expect(not dl, "the other group has dead letters: %r" % keys(dl))


def t_dl_consume():
    qid, gx = need("q_dlq", "g_x")
    need("dl_normal_handler")
    got, r = consume_dl(qid, gx, max_msgs=10)
    expect_status(r, 200, "consume_deadletters_message")
    expect(keys(got) == ["d1"], "dead letters %r, want d1" % keys(got))
    expect(got[0].message.body == {"k": "d1", "run": RUN}, "body %r" % got[0].message.body)
    expect(got[0].message.attributes == {"why": "fail twice"}, "attributes %r" % got[0].message.attributes)
    expect(isinstance(raw_json(r), list), "dead-letter answer is not a bare JSON array")
    S["dl_handler"] = got[0].handler


def t_dl_handler_swap():
    qid, gx = need("q_dlq", "g_x")
    hd = need("dl_handler")
    expect_ack_refused(lambda: ack(qid, gx, [(hd, "success")]), "dead-letter handler on the normal ack endpoint")
    hn = need("dl_normal_handler")
    expect_ack_refused(lambda: ack_dl(qid, gx, [(hn, "success")]), "normal (dead) handler on the dead-letter ack")


def t_dl_ack_fail():
    qid, gx = need("q_dlq", "g_x")
    hd = need("dl_handler")
    r = ack_dl(qid, gx, [(hd, "fail")])
    expect_status(r, 200, "confirm_dead_letters_messages")
    expect_ack(r, 0, 1, "dead-letter fail ack")
    got, _ = consume_dl(qid, gx, max_msgs=10)
    expect(keys(got) == ["d1"], "after a failed dead-letter ack got %r, want d1 again" % keys(got))
    S["dl_handler2"] = got[0].handler


def t_dl_ack_success():
    qid, gx = need("q_dlq", "g_x")
    hd = need("dl_handler2")
    expect_ack(ack_dl(qid, gx, [(hd, "success")]), 1, 0, "dead-letter success ack")
    got, r = consume_dl(qid, gx)
    expect(not got and r.body is None, "dead letters left after ack: %r" % keys(got))


def t_dl_counters():
    qid, gx, gy = need("q_dlq", "g_x", "g_y")
    need("dl_handler2")
    r = list_groups(qid, include_deadletter=True)
    expect(r.redrive_policy == "enable", "redrive_policy %r" % r.redrive_policy)
    byid = {g.id: g for g in r.groups or []}
    x, y = byid.get(gx), byid.get(gy)
    expect(x and y, "groups missing")
    expect((x.produced_deadletters, x.available_deadletters) == (1, 0),
           "gx produced/available deadletters %r/%r, want 1/0" % (x.produced_deadletters, x.available_deadletters))
    expect((y.produced_deadletters, y.available_deadletters) == (0, 0),
           "gy produced/available deadletters %r/%r, want 0/0" % (y.produced_deadletters, y.available_deadletters))
    r2 = list_groups(qid)
    expect(all(g.produced_deadletters is None for g in r2.groups or []) and r2.redrive_policy is None,
           "dead-letter fields present without include_deadletter")


# ---------------------------------------------------------------------------------------------
# FIFO

def t_fifo_setup():
    qid = need("q_fifo")
    r = create_groups(qid, ["gf"])
    S["g_f"] = r.groups[0].id
    send(qid, [msg("f1"), msg("f2"), msg("f3")])
    send(qid, [msg("f4")])


def t_fifo_head():
    qid, g = need("q_fifo", "g_f")
    got, _ = consume(qid, g, max_msgs=1)
    expect(keys(got) == ["f1"], "first consume got %r, want f1" % keys(got))
    S["f1_h"] = got[0].handler
    more, _ = consume(qid, g, max_msgs=10)
    expect(not more, "with the head in flight the group got %r (head-of-line blocking)" % keys(more))


def t_fifo_failed_head():
    qid, g = need("q_fifo", "g_f")
    expect_ack(ack(qid, g, [(need("f1_h"), "fail")]), 0, 1)
    got, _ = consume(qid, g, max_msgs=10)
    expect(keys(got) == ["f1", "f2", "f3", "f4"], "after the failed head got %r, want f1 f2 f3 f4 in order" % keys(got))
    S["fifo_batch"] = got


def t_fifo_second_in_flight():
    qid, g = need("q_fifo", "g_f")
    got = need("fifo_batch")
    h = handlers(got)
    expect_ack(ack(qid, g, [(h["f1"], "success")]), 1, 0)
    # f2..f4 are still leased from the batch; nothing may be delivered
    more, _ = consume(qid, g, max_msgs=10)
    expect(not more, "with f2 in flight got %r" % keys(more))
    expect_ack(ack(qid, g, [(h["f2"], "success"), (h["f3"], "success")]), 2, 0)
    more, _ = consume(qid, g, max_msgs=10)
    expect(not more, "with f4 in flight got %r" % keys(more))
    expect_ack(ack(qid, g, [(h["f4"], "success")]), 1, 0)
    send(qid, [msg("f5")])
    more, _ = consume(qid, g, max_msgs=10)
    expect(keys(more) == ["f5"], "after acking all got %r, want f5" % keys(more))
    ack(qid, g, [more[0].handler])


# ---------------------------------------------------------------------------------------------
# slow scenarios (threads)

def scenario_lease_expiry():
    """NORMAL queue, redrive enable, max_consume_count=2, ack_wait 15: two lease expiries -> dead letter."""
    c = mk_client()
    st = {}

    def step1():
        qid, g = need("q_lease", "g_l")
        send(qid, [msg("L1")], c=c)
        got, _ = consume(qid, g, c=c, ack_wait=15, max_msgs=10)
        st["t0"] = time.time()
        expect(keys(got) == ["L1"], "first consume got %r" % keys(got))
        st["h1"] = got[0].handler
        again, _ = consume(qid, g, c=c, time_wait=1)
        expect(not again, "leased message delivered again to its group within ack_wait: %r" % keys(again))

    def step2():
        qid, g = need("q_lease", "g_l")
        expect("h1" in st, "prerequisite missing: first lease")
        got, _ = consume(qid, g, c=c, ack_wait=15, time_wait=25, max_msgs=10)
        el = time.time() - st["t0"]
        expect(keys(got) == ["L1"], "after ack_wait 15 s (waited %.1f s) got %r, want L1 redelivered" % (el, keys(got)))
        expect(el >= 13, "redelivered after %.1f s, before the 15 s lease ended" % el)
        expect(el < 24, "redelivered only after %.1f s: the long poll was not woken by the lease expiry" % el)
        st["t1"] = time.time()
        st["h2"] = got[0].handler

    def step3():
        qid, g = need("q_lease", "g_l")
        expect("h2" in st, "prerequisite missing: redelivery")
        expect_ack_refused(lambda: ack(qid, g, [(st["h1"], "success")], c=c), "ack with the expired handler",
                           codes=("10542209", "10542205", "10540004"))

    def step4():
        qid, g = need("q_lease", "g_l")
        expect("h2" in st, "prerequisite missing: redelivery")
        got, _ = consume_dl(qid, g, c=c, time_wait=25, max_msgs=10)
        if not got:
            got, _ = consume_dl(qid, g, c=c, time_wait=5, max_msgs=10)
        el = time.time() - st["t1"]
        expect(keys(got) == ["L1"], "after two lease expiries the dead letters are %r, want L1" % keys(got))
        expect(el >= 13, "dead-lettered %.1f s after the second delivery, before its lease ended" % el)
        normal, _ = consume(qid, g, c=c, time_wait=1)
        expect(not normal, "dead message still delivered normally: %r" % keys(normal))
        expect_ack(ack_dl(qid, g, [got[0].handler], c=c), 1, 0, "dead-letter ack")

    run("lease: an unacked message is not redelivered to its group while ack_wait holds", step1)
    run("lease: after ack_wait (15 s) expires the message is redelivered and wakes a long poll", step2)
    run("lease: ack with the expired handler is not honoured", step3)
    run("dead letters: after max_consume_count=2 lease expiries the message is in the group's dead letters", step4)


def scenario_fifo_expiry():
    c = mk_client()

    def step():
        qid, g = need("q_fifo2", "g_f2")
        send(qid, [msg("h1"), msg("h2")], c=c)
        got, _ = consume(qid, g, c=c, ack_wait=15, max_msgs=1)
        t0 = time.time()
        expect(keys(got) == ["h1"], "first consume got %r" % keys(got))
        more, _ = consume(qid, g, c=c, time_wait=1, max_msgs=10)
        expect(not more, "with the head leased got %r" % keys(more))
        got, _ = consume(qid, g, c=c, time_wait=25, max_msgs=10)
        el = time.time() - t0
        expect(keys(got) == ["h1", "h2"], "after the head's lease expired got %r, want h1 h2" % keys(got))
        expect(el >= 13, "head redelivered after %.1f s, before its 15 s lease ended" % el)
        ack(qid, g, [e.handler for e in got], c=c)

    run("FIFO: after the head's lease expires the head is redelivered first, then the rest in order", step)


# ---------------------------------------------------------------------------------------------
# QUOTAS

def t_quotas():
    r = C.show_quotas(ShowQuotasRequest())
    expect_status(r, 200, "show_quotas")
    res = (r.quotas.resources if r.quotas else None) or []
    q = [x for x in res if x.type == "queue"]
    expect(q, "no 'queue' resource in %s" % (r.raw_content or b"")[:200])
    q = q[0]
    total = C.list_queues(ListQueuesRequest()).total
    expect(q.quota == 30, "quota %r, want 30" % q.quota)
    expect(q.used == total, "used %r, list_queues total %r" % (q.used, total))
    expect(isinstance(q.min, int) and isinstance(q.max, int), "min/max %r/%r" % (q.min, q.max))


def t_quota_exceeded():
    total = C.list_queues(ListQueuesRequest()).total
    expect(total <= 30, "project already has %d queues" % total)
    made = []
    try:
        for i in range(30 - total):
            made.append(create_queue("quota%02d" % i, track=False).id)
        expect_err(lambda: create_queue("quota-over", track=False), 400, "10240020", "queue #31")
        qr = C.show_quotas(ShowQuotasRequest())
        used = [x.used for x in (qr.quotas.resources or []) if x.type == "queue"]
        expect(used == [30], "used %r at the limit" % used)
    finally:
        for qid in made:
            try:
                C.delete_queue(DeleteQueueRequest(queue_id=qid))
            except Exception:  # noqa: BLE001
                with _created_lock:
                    CREATED.append(qid)


# ---------------------------------------------------------------------------------------------
# QUEUE RESOURCE TAGS

def qtag(qid, action, pairs, c=None):
    return (c or C).batch_create_or_delete_queue_tag(BatchCreateOrDeleteQueueTagRequest(
        queue_id=qid, body=BatchCreateOrDeleteTagReq(action=action, tags=[
            BatchCreateOrDeleteTagReqTags(key=k, value=v) for k, v in pairs])))


def qtags_of(qid):
    return sorted((t.key, t.value) for t in (C.show_queue_tags(ShowQueueTagsRequest(queue_id=qid)).tags or []))


def t_qtags_create():
    qid = need("q_main")
    r = qtag(qid, "create", [("env", "test"), ("team", "qgate")])
    expect_status(r, 204, "batch_create_or_delete_queue_tag")
    r = C.show_queue_tags(ShowQueueTagsRequest(queue_id=qid))
    expect_status(r, 200, "show_queue_tags")
    got = sorted((t.key, t.value) for t in r.tags or [])
    expect(got == [("env", "test"), ("team", "qgate")], "tags %r" % got)


def t_qtags_overwrite():
    qid = need("q_main")
    qtag(qid, "create", [("env", "prod")])
    got = qtags_of(qid)
    expect(got == [("env", "prod"), ("team", "qgate")], "tags %r, want env=prod overwriting env=test" % got)


def t_qtags_delete():
    qid = need("q_main")
    r = qtag(qid, "delete", [("team", "qgate")])
    expect_status(r, 204, "delete tags")
    expect(qtags_of(qid) == [("env", "prod")], "tags after delete %r" % qtags_of(qid))
    r = qtag(qid, "delete", [("team", "qgate")])
    expect_status(r, 204, "deleting an absent tag again")


def t_qtags_project():
    qm, qs = need("q_main", "q_misc")
    qtag(qs, "create", [("env", "test")])
    r = C.show_queue_project_tags(ShowQueueProjectTagsRequest())
    expect_status(r, 200, "show_queue_project_tags")
    agg = {t.key: sorted(t.values or []) for t in r.tags or []}
    expect("env" in agg and {"prod", "test"} <= set(agg["env"]), "project tags %r, want env with prod and test" % agg)
    expect(len(agg["env"]) == len(set(agg["env"])), "duplicate values %r" % agg["env"])


def t_qtags_invalid():
    qid = need("q_misc")
    expect_err(lambda: qtag(qid, "create", [("bad=key", "v")]), 400, what="key with '='")
    expect_err(lambda: qtag(qid, "create", [("k" * 37, "v")]), 400, what="37-char key")
    expect_err(lambda: qtag(qid, "create", [("okkey", "v" * 44)]), 400, what="44-char value")
    expect_err(lambda: qtag(qid, "explode", [("k", "v")]), 400, what="action 'explode'")


def t_qtags_limit():
    qid = need("q_misc")
    have = qtags_of(qid)
    pairs = [("k%02d" % i, "v") for i in range(11 - len(have))]
    expect_err(lambda: qtag(qid, "create", pairs), 400, what="11 tags on a queue")
    expect(qtags_of(qid) == have, "a refused tag request changed the tags: %r" % qtags_of(qid))


# ---------------------------------------------------------------------------------------------
# v1.0 prefix (documented paths; reached with the SDK's generic call_api, same signer)

def v1(method, path, response_type, path_params=None, query=None, body=None):
    return C.call_api(resource_path=path, method=method, path_params=path_params or {}, query_params=query or [],
                      header_params={"Content-Type": "application/json"}, body=body, post_params={},
                      response_type=response_type, response_headers=[], auth_settings=["apig-auth-iam"],
                      collection_formats={}, request_type=response_type.replace("Response", "Request"))


def t_v1_list():
    qm = need("q_main")
    r = v1("GET", "/v1.0/{project_id}/queues", "ListQueuesResponse", query=[("include_deadletter", True)])
    expect_status(r, 200, "GET /v1.0/{p}/queues")
    expect(qm in [q.id for q in r.queues or []], "run's queue missing from the v1.0 list")


def t_v1_quotas():
    r = v1("GET", "/v1.0/{project_id}/quotas/dms", "ShowQuotasResponse")
    expect_status(r, 200, "GET /v1.0/{p}/quotas/dms")
    q = [x for x in ((r.quotas.resources if r.quotas else None) or []) if x.type == "queue"]
    expect(q and q[0].quota == 30, "quotas %s" % (r.raw_content or b"")[:200])


def t_v1_flow():
    qid, g = need("q_v1", "g_v1")
    r = v1("POST", "/v1.0/{project_id}/queues/{queue_id}/messages", "SendMessagesResponse",
           path_params={"queue_id": qid}, body={"returnId": True, "messages": [{"body": {"k": "v1m", "run": RUN},
                                                                                "tags": ["v"]}]})
    expect_status(r, 201, "POST /v1.0 messages")
    expect(len(r.messages or []) == 1 and r.messages[0].id, "v1.0 send with returnId gave %s" %
           (r.raw_content or b"")[:200])
    r = v1("GET", "/v1.0/{project_id}/queues/{queue_id}/groups/{consumer_group_id}/messages",
           "ConsumeMessagesResponse", path_params={"queue_id": qid, "consumer_group_id": g},
           query=[("max_msgs", 10), ("time_wait", 1)])
    got = r.body or []
    expect(keys(got) == ["v1m"], "v1.0 consume got %r" % keys(got))
    r = v1("POST", "/v1.0/{project_id}/queues/{queue_id}/groups/{consumer_group_id}/ack",
           "ConfirmConsumptionMessagesResponse", path_params={"queue_id": qid, "consumer_group_id": g},
           body={"message": [{"handler": got[0].handler, "status": "success"}]})
    expect_ack(r, 1, 0, "v1.0 ack")


# ---------------------------------------------------------------------------------------------
# setup helpers for queues used by several checks

def setup_queue(state_key, suffix, groups=(), gkeys=(), **kw):
    r = create_queue(suffix, **kw)
    expect(r.id, "no id")
    S[state_key] = r.id
    if groups:
        g = create_groups(r.id, list(groups))
        ids = [x.id for x in g.groups or []]
        expect(len(ids) == len(groups), "groups %r" % ids)
        for k, i in zip(gkeys, ids):
            S[k] = i


def setup_rest():
    setup_queue("q_ack", "ack", ("gk", "gk2"), ("g_k", "g_k2"))
    send(S["q_ack"], [msg("b1"), msg("b2"), msg("b3")])
    setup_queue("q_ack2", "ack2", ("gk3",), ("g_k3",))
    setup_queue("q_tags", "tags")
    setup_queue("q_grp", "grp")
    setup_queue("q_del", "del2")
    setup_queue("q_v1", "v1", ("gv",), ("g_v1",))
    gs = create_groups(need("q_misc"), ["gm", "gr"]).groups
    S["g_m"], S["g_r"] = gs[0].id, gs[1].id
    gs = create_groups(need("q_dlq"), ["gx", "gy"]).groups
    S["g_x"], S["g_y"] = gs[0].id, gs[1].id


def main():
    # queues the slow threads need first, then the threads
    run("queue: create NORMAL queue (201, id and name)", t_create_main)
    run("queue: create FIFO queue with redrive_policy=enable, max_consume_count=3", t_create_fifo)
    run("queue: create NORMAL queue with redrive_policy=enable, max_consume_count=2", t_create_dlq)
    run("queue: queue_mode omitted creates a NORMAL queue", t_create_default_mode)
    run("setup: lease-expiry queue and group", setup_queue, "q_lease", "lease", ("gl",), ("g_l",),
        redrive="enable", mcc=2)
    run("setup: second FIFO queue and group", setup_queue, "q_fifo2", "fifo2", ("gf2",), ("g_f2",),
        mode="FIFO", redrive="enable", mcc=5)
    threads = [threading.Thread(target=scenario_lease_expiry), threading.Thread(target=scenario_fifo_expiry)]
    for th in threads:
        th.start()

    run("setup: remaining queues and groups", setup_rest)

    # AUTH
    run("auth: a correctly signed request is accepted (list_queues 200, total == len(queues))", t_auth_ok)
    run("auth: DmsAsyncClient request accepted", t_auth_async)
    run("auth: wrong SK refused (401 APIGW.0301, X-Request-Id)", t_auth_wrong_sk)
    run("auth: unknown AK refused (401 APIGW.0301)", t_auth_unknown_ak)
    run("auth: X-Sdk-Date 20 min off refused (401), 5 min off accepted", t_auth_stale_date)
    run("auth: SDK-HMAC-SM3 Authorization refused (401)", t_auth_sm3)
    run("auth: GET without Content-Type accepted (SignedHeaders without content-type)", t_auth_no_content_type)
    run("auth: signature over raw UTF-8 header bytes (HttpConfig.user_agent) accepted", t_auth_utf8_header)
    run("auth: unknown project id refused even with a valid key", t_auth_unknown_project)

    # QUEUES
    run("queue: create KAFKA_HA queue returns kafka_topic; reservation = retention_hours*60", t_create_kafka)
    run("queue: duplicate name refused (400 10240017)", t_create_dup)
    run("queue: invalid name characters refused (400 10240007)", t_create_bad_name)
    run("queue: 65-char name refused (400 10240011)", t_create_long_name)
    run("queue: 161-char description refused (400 10240013)", t_create_long_desc)
    run("queue: max_consume_count 0 and 101 refused (400 10240022)", t_create_bad_mcc)
    run("queue: retention_hours on a NORMAL queue refused (400 10240028)", t_create_retention_normal)
    run("queue: retention_hours 73 on a Kafka queue refused (400 10240027)", t_create_retention_range)

    # GROUPS (before any message goes to q_main)
    run("group: create two groups in one call (201, ids, names in order)", t_groups_create_two)
    run("group: list_consumer_groups shows queue_id, queue_name, groups and zero counters", t_groups_list)
    run("group: at most 3 groups per queue (4th refused 400 10240019)", t_groups_limit)
    run("group: a request listing 4 groups is refused as a whole (400 10240019)", t_groups_four_at_once)
    run("group: duplicate group name refused (400 10240018)", t_groups_dup)
    run("group: invalid group names refused (400 10240012)", t_groups_bad_name)
    run("group: paging with page_size=1 / current_page=N", t_groups_paging)
    run("group: delete (204), gone from the list, delete again 404 10240405", t_groups_delete)
    run("group: unknown group id refused on consume/ack/deadletters/delete (404 10240405)", t_groups_unknown)

    run("queue: list_queues shows the run's queues with the documented fields, no redrive fields by default",
        t_list_queues)
    run("queue: list_queues include_deadletter=true shows redrive_policy and max_consume_count", t_list_queues_dl)
    run("queue: show_queue fields (reservation 4320, max_msg_size_byte, created ms, group_count)", t_show_queue)
    run("queue: show_queue include_deadletter=true on the FIFO queue", t_show_queue_dl)
    run("queue: unknown queue id refused on every queue-scoped call (404 10240401, error_msg, X-Request-Id)",
        t_unknown_queue)
    run("queue: delete (204 empty), then show and delete answer 404 10240401", t_delete_queue)
    run("auth: tenant B's key on tenant A's project refused; A's queue untouched", t_auth_cross_tenant)

    # SEND
    run("send: 3 messages with body, attributes, tags and return_id (201, state 0, distinct ids)", t_send_basic)
    run("send: without return_id no ids are returned", t_send_no_return_id)
    run("send: 11 messages (or none) refused (400 10540010)", t_send_too_many)
    run("send: 4 tags, bad tag characters, 65-char tag refused (400 10540001)", t_send_bad_tags)
    run("send: payload over 512 KB refused (400 10540011)", t_send_too_big)
    run("send: delay_time over 604800000 refused (400 10540010)", t_send_bad_delay)
    run("send: a message without body refused (400)", t_send_no_body)

    # CONSUME
    run("consume: fan-out, both groups receive every message", t_fanout)
    run("consume: body and attributes round-trip", t_fanout_fields)
    run("consume: tags inside message (the SDK model's message.tags)", t_tags_inside)
    run("consume: tags also beside message (raw answer; the SDK model drops them)", t_tags_beside)
    run("consume: a leased message is not handed to the same group again", t_lease_same_group)
    run("ack: all success (200, success 3 fail 0), acked messages not redelivered", t_ack_all)
    run("group: counters produced/consumed/available per group, queue keeps acked messages", t_counters)
    run("consume: max_msgs caps the batch", t_max_msgs_one)
    run("consume: empty answer is 200 [] (SDK body None) after waiting time_wait", t_empty)
    run("consume: long poll returns as soon as a message is sent", t_long_poll)
    run("send: delay_time hides a message until it is due", t_delay)
    run("consume: string/array/number/non-ASCII bodies and attributes round-trip", t_bodies)
    run("consume: max_msgs 0/11 (10240014), time_wait 0/61 (10240021), ack_wait 14/301 (10542206) refused",
        t_ranges)
    run("consume: 4 filter tags or a 65-char filter tag refused (400), without fixing a rule", t_filter_limits)

    # ACK
    run("ack: ordered batch [success, fail, success] -> success 1 fail 2; 2nd and 3rd consumable again",
        t_ack_batch)
    run("ack: an already used handler is not honoured", t_ack_reused)
    run("ack: invalid status refused (400 10540003)", t_ack_bad_status)
    run("ack: status omitted defaults to success", t_ack_default_status)
    run("ack: without redrive a message failed 3 times is still redelivered", t_no_redrive_redelivery)
    run("ack: a forged handler is not honoured", t_ack_forged)
    run("ack: handlers of another group or queue are not honoured", t_ack_other_group)

    # TAG FILTERS
    run("tags: setup (groups or/and/all, 5 messages)", t_tag_setup)
    run("tags: or filter gets messages with any filter tag, not untagged ones", t_tag_or)
    run("tags: and filter gets only messages with all filter tags", t_tag_and)
    run("tags: an unfiltered group gets every message, untagged ones included", t_tag_all)
    run("tags: consumed tags inside and beside message in the raw answer", t_tag_both_places)
    run("tags: a later consume with a different rule refused (400 10542204)", t_tag_rule_change)
    run("tags: the same rule with tags reordered, tag_type omitted, or comma-joined is accepted", t_tag_rule_same)
    run("tags: messages sent after the rules were fixed are filtered the same way", t_tag_later_messages)

    # DEAD LETTERS
    run("dead letters: two failed acks (max_consume_count=2) stop normal delivery", t_dl_fail_twice)
    run("dead letters: only the failing group is affected", t_dl_other_group)
    run("dead letters: consume_deadletters returns body and attributes", t_dl_consume)
    run("dead letters: normal and dead-letter handlers are not interchangeable", t_dl_handler_swap)
    run("dead letters: a failed dead-letter ack makes it consumable again", t_dl_ack_fail)
    run("dead letters: dead-letter ack success empties the group's dead letters", t_dl_ack_success)
    run("dead letters: list_consumer_groups include_deadletter counters and redrive_policy", t_dl_counters)

    # FIFO
    run("FIFO: setup (group, 4 messages in 2 sends)", t_fifo_setup)
    run("FIFO: the head comes first; nothing after a leased head is delivered", t_fifo_head)
    run("FIFO: a failed head is redelivered before the rest, batch in send order", t_fifo_failed_head)
    run("FIFO: a leased later message blocks the ones after it", t_fifo_second_in_flight)

    # RESOURCE TAGS
    run("queue tags: create two (204), show_queue_tags lists them", t_qtags_create)
    run("queue tags: create overwrites the value of an existing key", t_qtags_overwrite)
    run("queue tags: delete removes a key; deleting it again is fine (204)", t_qtags_delete)
    run("queue tags: show_queue_project_tags aggregates values per key", t_qtags_project)
    run("queue tags: invalid key, long key/value and bad action refused (400)", t_qtags_invalid)
    run("queue tags: more than 10 tags on a queue refused (400), nothing changed", t_qtags_limit)

    # v1.0
    run("v1.0: list queues under /v1.0/{project_id}/queues", t_v1_list)
    run("v1.0: quotas under /v1.0/{project_id}/quotas/dms", t_v1_quotas)
    run("v1.0: send (returnId), consume and ack under /v1.0", t_v1_flow)

    # long poll on a deleted queue (needs q_del's group)
    def add_del_group():
        S["g_del"] = create_groups(need("q_del"), ["gd"]).groups[0].id
    run("setup: group for the delete-while-polling check", add_del_group)
    run("queue: deleting a queue ends a long poll on it with 404 10240401", t_delete_wakes_poll)

    for th in threads:
        th.join(120)

    # QUOTAS (after everything else: the threads have finished, nothing else creates queues)
    run("quotas: show_quotas reports queue quota 30 and used = queues in the project", t_quotas)
    run("quotas: the queue beyond the quota of 30 is refused (400 10240020)", t_quota_exceeded)

    def cleanup():
        bad = []
        with _created_lock:
            ids = list(CREATED)
        for qid in ids:
            try:
                C.delete_queue(DeleteQueueRequest(queue_id=qid))
            except ServiceResponseException as e:
                if not (e.status_code == 404 and str(e.error_code) == "10240401"):  # already deleted by a check
                    bad.append("%s: %s" % (qid, describe(e)))
            except Exception as e:  # noqa: BLE001
                bad.append("%s: %s" % (qid, describe(e)))
        left = [q.name for q in (C.list_queues(ListQueuesRequest()).queues or []) if (q.name or "").startswith(PFX)]
        expect(not bad and not left, "could not delete %s; left %s" % (bad, left))
    run("cleanup: every queue of this run deleted", cleanup)


if __name__ == "__main__":
    t_start = time.time()
    try:
        main()
    except Exception as e:  # noqa: BLE001 - never end with a traceback
        report("suite: ran to the end", False, describe(e))
    sys.exit(1 if failed else 0)
