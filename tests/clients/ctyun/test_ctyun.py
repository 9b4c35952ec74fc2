#!/usr/bin/env python3
"""Conformance suite for qgate's CTYun DMS apiproxy v3 dialect (/apiproxy/v3/queue/...).

Independent of the server: written from the vendor document and the contract in
dialects/ctyun/README.md, using only ctyun_client.py (standard library). See README.md for the
readings of that contract it encodes.

Environment:
  QGATE_BASE            http://host:port
  QGATE_AK / QGATE_SK   an access key of tenant A
  QGATE_OTHER_AK / QGATE_OTHER_SK   a key of a second tenant (default other-ak / other-sk)
  QGATE_PROJECT         optional: tenant A's configured project id (checked on a default-namespace queue)
  QGATE_REGION          optional, default cn-snxy1

Output: one line per check, `PASS <name>` or `FAIL <name>: <reason>`; exit status 1 if any failed.
Test areas run in parallel threads, each in its own customInfo sub-namespace (type 2 + a random
accountId), so the 5-queues-per-namespace quota never collides; every queue made is removed.
"""
import base64
import json
import os
import re
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctyun_client as cc  # noqa: E402
from ctyun_client import OMIT, PATH_PREFIX  # noqa: E402

BASE = os.environ.get("QGATE_BASE", "http://127.0.0.1:8080")
AK = os.environ.get("QGATE_AK", "demo-ak")
SK = os.environ.get("QGATE_SK", "demo-sk")
OTHER_AK = os.environ.get("QGATE_OTHER_AK", "other-ak")
OTHER_SK = os.environ.get("QGATE_OTHER_SK", "other-sk")
PROJECT = os.environ.get("QGATE_PROJECT")
REGION = os.environ.get("QGATE_REGION", "cn-snxy1")
RUN = uuid.uuid4().hex[:8]

A = cc.Client(BASE, AK, SK, region=REGION)
B = cc.Client(BASE, OTHER_AK, OTHER_SK, region=REGION)

# ----------------------------------------------------------------------------- reporting

_lock = threading.Lock()
_counts = {"pass": 0, "fail": 0}


class Fail(Exception):
    pass


def report(name, ok, why=""):
    with _lock:
        if ok:
            _counts["pass"] += 1
            line = "PASS " + name
        else:
            _counts["fail"] += 1
            line = "FAIL %s: %s" % (name, " ".join(str(why).split())[:700])
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def check(name):
    """Decorator: runs the function at once as one check; any exception is a FAIL line."""
    def deco(fn):
        try:
            fn()
            report(name, True)
        except Fail as e:
            report(name, False, e)
        except Exception as e:  # noqa: BLE001 - a broken check must not abort the others
            report(name, False, "%s: %s" % (type(e).__name__, e))
        return fn
    return deco


def ensure(cond, why):
    if not cond:
        raise Fail(why)


def eq(got, want, what="value"):
    if got != want:
        raise Fail("%s: got %s, want %s" % (what, _short(got), _short(want)))


def _short(v, n=300):
    s = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else repr(v)
    return s if len(s) <= n else s[:n] + "…"


def need(state, *keys):
    out = []
    for k in keys:
        if state.get(k) is None:
            raise Fail("prerequisite %r unavailable (an earlier check failed)" % k)
        out.append(state[k])
    return out[0] if len(out) == 1 else out


# ----------------------------------------------------------------------------- envelopes (A-D)

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _obj(r):
    if r.json_error:
        raise Fail("%s (HTTP %d)" % (r.json_error, r.status))
    if not isinstance(r.json, dict):
        raise Fail("body is not a JSON object: " + r.short())
    return r.json


def _ok(r):
    j = _obj(r)
    if j.get("statusCode") != 800 or not is_int(j.get("statusCode")):
        raise Fail("expected statusCode 800 (JSON number): " + r.short())
    ensure(r.status == 200, "HTTP status %d with statusCode 800 (want 200)" % r.status)
    ensure("application/json" in r.headers.get("content-type", ""), "Content-Type %r" % r.headers.get("content-type"))
    return j


def env_A(r):
    """createQueue: {"statusCode":800,"returnObj":"<JSON text>"} → the parsed inner object."""
    j = _ok(r)
    eq(sorted(j), ["returnObj", "statusCode"], "top-level keys (envelope A)")
    ensure(isinstance(j["returnObj"], str), "returnObj must be a JSON string, got %s" % _short(j["returnObj"]))
    inner = json.loads(j["returnObj"])
    ensure(isinstance(inner, dict), "inner returnObj is not an object: %s" % _short(inner))
    return inner


def env_B(r):
    """{"statusCode":800,"returnObj":{"returnObj":"<JSON text>","errorMessageString":"","errorMessageArray":[],"succeed":true}}"""
    j = _ok(r)
    eq(sorted(j), ["returnObj", "statusCode"], "top-level keys (envelope B)")
    ro = j["returnObj"]
    ensure(isinstance(ro, dict), "returnObj must be an object, got %s" % _short(ro))
    eq(sorted(ro), ["errorMessageArray", "errorMessageString", "returnObj", "succeed"], "returnObj keys (envelope B)")
    eq(ro["errorMessageString"], "", "errorMessageString")
    eq(ro["errorMessageArray"], [], "errorMessageArray")
    ensure(ro["succeed"] is True, "succeed must be true, got %s" % _short(ro["succeed"]))
    ensure(isinstance(ro["returnObj"], str), "inner returnObj must be a JSON string, got %s" % _short(ro["returnObj"]))
    return json.loads(ro["returnObj"])


def env_C(r):
    j = _ok(r)
    eq(j, {"statusCode": 800, "errorMessageString": "", "errorMessageArray": [], "succeed": True}, "envelope C")


def env_D(r):
    """Payload under returnObj and mirrored at the top level → the payload."""
    j = _ok(r)
    ro = j.get("returnObj")
    ensure(isinstance(ro, dict), "returnObj must be an object (envelope D), got %s" % _short(ro))
    eq(sorted(set(j) - {"statusCode", "returnObj"}), sorted(ro), "top-level mirror keys (envelope D)")
    for k in ro:
        eq(j[k], ro[k], "mirrored top-level %r" % k)
    return ro


def failure(r, code=900, http=200, error_code=None):
    j = _obj(r)
    if j.get("statusCode") != code or not is_int(j.get("statusCode")):
        raise Fail("expected statusCode %d: %s" % (code, r.short()))
    ensure(r.status == http, "HTTP status %d for statusCode %d (want %d)" % (r.status, code, http))
    for k in ("message", "errorCode", "errorMessageString"):
        ensure(isinstance(j.get(k), str), "failure envelope %r must be a string: %s" % (k, r.short()))
    ensure(j["message"] != "", "failure message is empty")
    ensure(isinstance(j.get("errorMessageArray"), list), "errorMessageArray must be a list: " + r.short())
    ensure(j.get("succeed") is False, "succeed must be false: " + r.short())
    ensure("returnObj" in j and j["returnObj"] is None, "returnObj must be null: " + r.short())
    if error_code is not None:
        eq(j["errorCode"], error_code, "errorCode")
    return j


def fail900(r, error_code=None):
    return failure(r, 900, 200, error_code)


def bad400(r):
    return failure(r, 400, 400, "Openapi.Parameter.Error")


def not_found404(r):
    j = _obj(r)
    ensure(r.status == 404, "HTTP status %d (want 404): %s" % (r.status, r.short()))
    eq(j.get("statusCode"), 404, "statusCode")


# ----------------------------------------------------------------------------- message helpers

HANDLER_KEYS = ["consumerId", "consumerVersion", "group", "offset", "partition", "redeliverTimes", "tagList", "tagType", "topic"]


def items_of(r):
    arr = env_B(r)
    ensure(isinstance(arr, list), "inner returnObj must be a JSON array, got %s" % _short(arr))
    for it in arr:
        ensure(isinstance(it, dict), "item is not an object: %s" % _short(it))
        eq(sorted(it), ["handler", "message"], "item keys")
        ensure(isinstance(it["handler"], str) and it["handler"], "handler must be a non-empty string")
        m = it["message"]
        ensure(isinstance(m, dict), "message must be an object")
        eq(sorted(m), ["attributes", "body", "tags"], "message keys")
        ensure(isinstance(m["attributes"], dict), "attributes must be an object")
        ensure(isinstance(m["tags"], list), "tags must be a list")
    return arr


def bodies(items):
    return [it["message"]["body"] for it in items]


def handlers(items):
    return [it["handler"] for it in items]


def handler_info(h):
    try:
        d = cc.decode_handler(h)
    except Exception as e:  # noqa: BLE001
        raise Fail("handler is not standard base64 of JSON (%s): %r" % (e, h[:80]))
    ensure(isinstance(d, dict), "handler JSON is not an object")
    return d


def entries(hs, statuses=None):
    statuses = statuses or ["success"] * len(hs)
    return [{"handler": h, "status": s} for h, s in zip(hs, statuses)]


def counts(r):
    inner = env_B(r)
    ensure(isinstance(inner, dict), "confirm inner returnObj is not an object: %s" % _short(inner))
    eq(sorted(inner), ["fail", "success"], "confirm result keys")
    ensure(is_int(inner["success"]) and is_int(inner["fail"]), "success/fail must be JSON numbers: %s" % _short(inner))
    return inner["success"], inner["fail"]


def group_stats(c, qid, include_dl=None):
    p = env_D(c.query_groups(qid, include_dl))
    return {g["name"]: g for g in p["groups"]}, p


def ci(area):
    return cc.custom_info("conf-%s-%s-%s" % (area, RUN, uuid.uuid4().hex[:6]))


class Area:
    """A test area: its own namespace; queues made through mkq() are removed at the end."""

    def __init__(self, name):
        self.name = name
        self.c = A.with_namespace(ci(name))
        self.made = []

    def mkq(self, name, mode="NORMAL", description="conformance", redrive=None, max_consume=None, client=None, **kw):
        c = client or self.c
        inner = env_A(c.create_queue(name, mode, description, redrive, max_consume, **kw))
        self.made.append((c, inner["id"]))
        return inner["id"]

    def mkgroups(self, qid, names, client=None):
        c = client or self.c
        p = env_D(c.create_groups(qid, [{"name": n} for n in names]))
        ids = {g["name"]: g["id"] for g in p["groups"]}
        for n in names:
            ensure(n in ids, "group %r missing from createConsumeGroup reply: %s" % (n, _short(p)))
        return [ids[n] for n in names]

    def cleanup(self):
        for c, qid in self.made:
            try:
                c.remove_queue(qid)
            except Exception:  # noqa: BLE001
                pass


def expect_items(c, gid, qid, want_bodies, ordered=False, **kw):
    items = items_of(c.consume(gid, qid, **kw))
    got = bodies(items)
    if ordered:
        eq(got, want_bodies, "consumed bodies (in order)")
    else:
        eq(sorted(map(_key, got)), sorted(map(_key, want_bodies)), "consumed bodies")
    return items


def _key(b):
    return json.dumps(b, sort_keys=True)


def ack_all(c, qid, gid, items):
    if items:
        s, f = counts(c.confirm(qid, gid, entries(handlers(items))))
        eq((s, f), (len(items), 0), "(success, fail) acking all")


# ============================================================================= areas


def area_auth():
    ar = Area("auth")
    c = ar.c
    S = {}

    @check("auth: unknown operation path, unsigned → HTTP 404, statusCode 404")
    def _():
        not_found404(c.raw("GET", PATH_PREFIX + "noSuchOperation", []))

    @check("auth: unknown operation path, signed → HTTP 404, statusCode 404")
    def _():
        not_found404(c.call("noSuchOperation", {"regionId": REGION}, method="POST"))

    @check("auth: correctly signed request in a customInfo sub-namespace → 800")
    def _():
        env_D(c.query_quota())

    @check("auth: no customInfo (the access key's own namespace) → 800")
    def _():
        env_D(c.query_queue(custom_info=OMIT))

    for h in ["accessKey", "contentMD5", "requestDate", "Hmac"]:
        @check("auth: missing %s header → 400" % h)
        def _():
            bad400(c.query_quota(omit_headers=[h]))

    @check("auth: unparseable requestDate → 400")
    def _():
        bad400(c.query_quota(date="yesterday at noon"))

    @check("auth: requestDate with an unknown alphabetic zone → 400")
    def _():
        bad400(c.query_quota(date=cc.http_date()[:-3] + "XYZ"))

    @check("auth: requestDate one hour old → 900 Openapi.RequestDate.Expired")
    def _():
        fail900(c.query_quota(date=cc.http_date(time.time() - 3600)), "Openapi.RequestDate.Expired")

    @check("auth: requestDate one hour in the future → 900 Openapi.RequestDate.Expired")
    def _():
        fail900(c.query_quota(date=cc.http_date(time.time() + 3600)), "Openapi.RequestDate.Expired")

    @check("auth: requestDate ten minutes old (inside the 900 s window) → 800")
    def _():
        env_D(c.query_quota(date=cc.http_date(time.time() - 600)))

    @check("auth: requestDate in CST (UTC+8 wall clock) → 800")
    def _():
        env_D(c.query_quota(date=cc.http_date(zone="CST")))

    @check("auth: requestDate with zero-padded day and numeric +0800 zone → 800")
    def _():
        t = time.gmtime(int(time.time()) + 8 * 3600)
        d = "%s, %02d %s %d %02d:%02d:%02d +0800" % (cc._WEEKDAYS[t.tm_wday], t.tm_mday, cc._MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)
        env_D(c.query_quota(date=d))

    @check("auth: unknown accessKey → 900 Openapi.AccessKey.Invalid")
    def _():
        fail900(c.with_key("no-such-ak-" + RUN, "whatever").query_quota(), "Openapi.AccessKey.Invalid")

    @check("auth: bad Hmac (wrong secret) → 900 Openapi.Signature.Error")
    def _():
        fail900(c.query_quota(secret_key=SK + "x"), "Openapi.Signature.Error")

    @check("auth: Hmac over a different path → 900 Openapi.Signature.Error")
    def _():
        p = c.prepare("queryQuota", {"regionId": REGION}, path=PATH_PREFIX + "queryQueue")
        p.path = PATH_PREFIX + "queryQuota"
        fail900(c.send_prepared(p), "Openapi.Signature.Error")

    @check("auth: bad Hmac on a malformed call → 900, not 400 (signature checked first)")
    def _():
        fail900(c.call("querySpecifyQueue", {"regionId": REGION}, secret_key="wrong"), "Openapi.Signature.Error")

    @check("auth: stale requestDate on a malformed call → 900, not 400")
    def _():
        fail900(c.call("querySpecifyQueue", {"regionId": REGION}, date=cc.http_date(time.time() - 7200)))

    @check("auth: Hmac without '=' padding → 800")
    def _():
        p = c.prepare("queryQuota", {"regionId": REGION})
        p.headers = [(k, v.rstrip("=") if k == "Hmac" else v) for k, v in p.headers]
        env_D(c.send_prepared(p))

    @check("auth: no platform header → 800")
    def _():
        env_D(c.query_quota(omit_headers=["platform"]))

    @check("auth: lowercase header names (accesskey, contentmd5, requestdate, hmac, regionid) → 800")
    def _():
        p = c.prepare("queryQuota", {"regionId": REGION})
        p.headers = [(k.lower(), v) for k, v in p.headers]
        env_D(c.send_prepared(p))

    @check("auth: contentMD5 not matching the params (Hmac over it) → 900 Openapi.ContentMD5.Mismatch (default content_md5=permissive)")
    def _():
        fail900(c.query_quota(md5_values=["not", "the", "params"]), "Openapi.ContentMD5.Mismatch")

    @check("auth: contentMD5 = MD5(\"\") with params (PHP/PyPI clients) → 800")
    def _():
        env_D(c.query_quota(md5_values=[]))

    @check("auth: GET operation called with POST → 400")
    def _():
        bad400(c.call("queryQueue", {"regionId": REGION}, method="POST"))

    @check("auth: POST operation called with GET → 400")
    def _():
        bad400(c.call("removeQueue", {"regionId": REGION, "queueId": str(uuid.uuid4())}, method="GET"))

    # --- tenancy and isolation (customInfo namespaces)
    @check("auth: tenant A creates a queue in sub-namespace X")
    def _():
        S["qa"] = ar.mkq("iso-" + RUN)

    @check("auth: tenant B cannot see tenant A's queue id → 900 DMS.QueueNotFound")
    def _():
        qa = need(S, "qa")
        fail900(B.query_specify_queue(qa), "DMS.QueueNotFound")

    @check("auth: tenant B with the same customInfo accountId still cannot see it (sub-namespaces never escape their key)")
    def _():
        qa = need(S, "qa")
        b = B.with_namespace(c.custom_info)
        fail900(b.query_specify_queue(qa), "DMS.QueueNotFound")
        p = env_D(b.query_queue())
        ensure(qa not in [q.get("id") for q in p.get("queues", [])], "queue listed for tenant B")

    @check("auth: tenant B cannot send to, group on, or remove tenant A's queue (900)")
    def _():
        qa = need(S, "qa")
        b = B.with_namespace(c.custom_info)
        fail900(b.send(qa, [{"body": "intruder"}]))
        fail900(b.create_groups(qa, [{"name": "intruder"}]))
        fail900(b.remove_queue(qa))
        q = env_B(c.query_specify_queue(qa))
        eq(q.get("produced_messages"), 0, "produced_messages after tenant B's attempts")
        eq(q.get("group_count"), 0, "group_count after tenant B's attempts")

    @check("auth: the sub-namespace queue is not visible without customInfo (the key's own namespace)")
    def _():
        qa = need(S, "qa")
        fail900(c.query_specify_queue(qa, custom_info=OMIT), "DMS.QueueNotFound")

    @check("auth: the sub-namespace queue is not visible from another accountId")
    def _():
        qa = need(S, "qa")
        fail900(c.query_specify_queue(qa, custom_info=cc.custom_info("other-" + RUN)), "DMS.QueueNotFound")

    @check("auth: type 1 with crmBizId = the same id is a different namespace")
    def _():
        qa = need(S, "qa")
        acct = c.custom_info["identity"]["accountId"]
        fail900(c.query_specify_queue(qa, custom_info=cc.custom_info(None, 1, crm_biz_id=acct)), "DMS.QueueNotFound")

    @check("auth: type 0 ignores identity.accountId (the key's own namespace)")
    def _():
        qa = need(S, "qa")
        acct = c.custom_info["identity"]["accountId"]
        fail900(c.query_specify_queue(qa, custom_info=cc.custom_info(acct, 0)), "DMS.QueueNotFound")

    @check("auth: type \"2\" (a string) selects the same namespace as 2")
    def _():
        qa = need(S, "qa")
        ci2 = dict(c.custom_info, type="2")
        env_B(c.query_specify_queue(qa, custom_info=ci2))

    @check("auth: identity key 'accountid' matched case-insensitively")
    def _():
        qa = need(S, "qa")
        ci2 = dict(c.custom_info, identity={"crmBizId": "", "accountid": c.custom_info["identity"]["accountId"]})
        env_B(c.query_specify_queue(qa, custom_info=ci2))

    @check("auth: customInfo type 2 without accountId → 400")
    def _():
        bad400(c.query_quota(custom_info=cc.custom_info("", 2)))

    @check("auth: customInfo type 1 without crmBizId → 400")
    def _():
        bad400(c.query_quota(custom_info=cc.custom_info("x", 1, crm_biz_id="")))

    @check("auth: customInfo sent as a header on a POST selects the namespace")
    def _():
        r = c.create_queue("hdr-" + RUN, "NORMAL", "x", customInfo_in_header=True)
        qid = env_A(r)["id"]
        ar.made.append((c, qid))
        env_B(c.query_specify_queue(qid))
        fail900(c.query_specify_queue(qid, custom_info=OMIT), "DMS.QueueNotFound")

    @check("auth: a queue in the key's own namespace is separate from the sub-namespace (create, look up, remove)")
    def _():
        r = c.create_queue("conf-own-" + RUN, "NORMAL", "x", custom_info=OMIT)
        inner = env_A(r)
        qid = inner["id"]
        ar.made.append((c.with_namespace(None), qid))
        S["own_project"] = inner["project_id"]
        fail900(c.query_specify_queue(qid), "DMS.QueueNotFound")
        env_B(c.query_specify_queue(qid, custom_info=OMIT))
        S["own_q"] = qid

    @check("auth: tenant B (its own namespace) cannot see or remove a queue of tenant A's own namespace")
    def _():
        qid = need(S, "own_q")
        fail900(B.query_specify_queue(qid, custom_info=OMIT), "DMS.QueueNotFound")
        ensure(qid not in [q.get("id") for q in env_D(B.query_queue(custom_info=OMIT)).get("queues", [])], "listed for tenant B")
        fail900(B.remove_queue(qid, custom_info=OMIT), "DMS.QueueNotFound")
        env_B(c.query_specify_queue(qid, custom_info=OMIT))

    @check("auth: removing the own-namespace queue → envelope C")
    def _():
        env_C(c.remove_queue(need(S, "own_q"), custom_info=OMIT))

    if PROJECT:
        @check("auth: a queue in the key's own namespace reports the tenant's configured project_id")
        def _():
            eq(need(S, "own_project"), PROJECT, "project_id")

    @check("auth: a sub-namespace has its own project_id (32 lowercase hex)")
    def _():
        own = need(S, "own_project")
        inner = env_A(c.create_queue("pid-" + RUN, "NORMAL", "x"))
        ar.made.append((c, inner["id"]))
        ensure(HEX32.match(inner["project_id"]), "project_id %r" % inner["project_id"])
        ensure(inner["project_id"] != own, "sub-namespace project_id equals the key's own one")

    ar.cleanup()


def area_queues():
    ar = Area("queues")
    c = ar.c
    S = {}
    base_keys = sorted(["id", "name", "description", "queue_mode", "reservation", "created", "max_msg_size_byte", "produced_messages", "group_count"])
    dl_keys = sorted(base_keys + ["redrive_policy", "max_consume_count"])

    @check("queues: queryQuota in a fresh namespace → envelope D {quotas:{resources:[queue 5, used 0, min 1, max 20]}}")
    def _():
        p = env_D(c.query_quota())
        eq(p, {"quotas": {"resources": [{"type": "queue", "quota": 5, "used": 0, "min": 1, "max": 20}]}}, "queryQuota payload")

    @check("queues: queryQueue in a fresh namespace → envelope D {queues:[], total:0}")
    def _():
        eq(env_D(c.query_queue()), {"queues": [], "total": 0}, "queryQueue payload")

    @check("queues: createQueue NORMAL → envelope A, returnObj a JSON string {project_id,name,id}")
    def _():
        inner = env_A(c.create_queue("conf-normal", "NORMAL", "billing", "enable", "5"))
        eq(sorted(inner), ["id", "name", "project_id"], "createQueue inner keys")
        eq(inner["name"], "conf-normal", "name")
        ensure(UUID4.match(inner["id"]), "queue id %r is not a lowercase UUIDv4" % inner["id"])
        ensure(HEX32.match(inner["project_id"]), "project_id %r is not 32 lowercase hex" % inner["project_id"])
        ar.made.append((c, inner["id"]))
        S["q1"] = inner["id"]
        S["t_created"] = time.time()

    @check("queues: createQueue FIFO with the doc table's key spelling 'queueMod', no description")
    def _():
        S["q2"] = ar.mkq("conf-fifo", "FIFO", None, "disable", mode_key="queueMod")

    @check("queues: queueMode is trimmed and case-insensitive (' fifo ')")
    def _():
        S["q3"] = ar.mkq("conf-fifo2", " fifo ", "x")

    @check("queues: redrivePolicy enable without maxConsumeCount → created")
    def _():
        S["q4"] = ar.mkq("conf-dl-default", "NORMAL", "x", "enable")

    bad = [
        ("duplicate name", dict(name="conf-normal"), "DMS.QueueNameDuplicate"),
        ("name with a space and '!'", dict(name="bad name!"), None),
        ("name of 65 characters", dict(name="n" * 65), None),
        ("queueMode LIFO", dict(name="conf-lifo", mode="LIFO"), None),
        ("maxConsumeCount 0", dict(name="conf-mc0", redrive="enable", max_consume="0"), None),
        ("maxConsumeCount 101", dict(name="conf-mc101", redrive="enable", max_consume="101"), None),
        ("description with '<'", dict(name="conf-desc", description="<b>x</b>"), None),
        ("description of 161 characters", dict(name="conf-desc2", description="d" * 161), None),
    ]
    for what, kw, code in bad:
        @check("queues: createQueue with %s → 900" % what)
        def _():
            args = dict(mode="NORMAL", description="x", redrive=None, max_consume=None)
            args.update(kw)
            r = c.create_queue(args.pop("name"), **args)
            fail900(r, code)

    @check("queues: the refused creates made nothing (queryQueue total 4)")
    def _():
        eq(env_D(c.query_queue())["total"], 4, "total")

    @check("queues: createQueue maxConsumeCount as a JSON number (100) and queueMode KAFKA_HA → 800")
    def _():
        S["q5"] = ar.mkq("conf-kafka", "KAFKA_HA", "x", "enable", 100)

    @check("queues: queryQueue → 5 queues oldest first, exact keys, JSON numbers")
    def _():
        q1, q2, q3, q4, q5 = need(S, "q1", "q2", "q3", "q4", "q5")
        p = env_D(c.query_queue())
        eq(sorted(p), ["queues", "total"], "payload keys")
        eq(p["total"], 5, "total")
        eq([q["id"] for q in p["queues"]], [q1, q2, q3, q4, q5], "queue ids in creation order")
        for q in p["queues"]:
            eq(sorted(q), base_keys, "queue keys without includeDeadletter")
            for k in ("reservation", "created", "max_msg_size_byte", "produced_messages", "group_count"):
                ensure(is_int(q[k]), "%s must be a JSON number, got %s" % (k, _short(q[k])))
        q = p["queues"][0]
        eq((q["name"], q["description"], q["queue_mode"], q["reservation"], q["max_msg_size_byte"], q["produced_messages"], q["group_count"]),
           ("conf-normal", "billing", "NORMAL", 4320, 524288, 0, 0), "first queue fields")
        ensure(abs(q["created"] / 1000.0 - S["t_created"]) < 600, "created %r is not epoch ms near now" % q["created"])
        eq([q["queue_mode"] for q in p["queues"][1:3]], ["FIFO", "FIFO"], "FIFO queue_mode (queueMod key; ' fifo ')")

    @check("queues: queryQueue includeDeadletter=false → no redrive keys")
    def _():
        for q in env_D(c.query_queue("false"))["queues"]:
            eq(sorted(q), base_keys, "queue keys")

    @check("queues: queryQueue includeDeadletter=true → redrive_policy, max_consume_count")
    def _():
        p = env_D(c.query_queue("true"))
        by = {q["id"]: q for q in p["queues"]}
        for q in p["queues"]:
            eq(sorted(q), dl_keys, "queue keys with includeDeadletter")
        q1, q2, q4, q5 = need(S, "q1", "q2", "q4", "q5")
        eq((by[q1]["redrive_policy"], by[q1]["max_consume_count"]), ("enable", 5), "q1 redrive")
        eq(by[q2]["redrive_policy"], "disable", "q2 redrive_policy")
        eq((by[q4]["redrive_policy"], by[q4]["max_consume_count"]), ("enable", 3), "default maxConsumeCount")
        eq(by[q5]["max_consume_count"], 100, "numeric maxConsumeCount")

    @check("queues: querySpecifyQueue → envelope B, inner returnObj a JSON string of the queue")
    def _():
        q1 = need(S, "q1")
        q = env_B(c.query_specify_queue(q1))
        eq(sorted(q), base_keys, "queue keys")
        eq((q["id"], q["name"], q["queue_mode"], q["reservation"]), (q1, "conf-normal", "NORMAL", 4320), "fields")

    @check("queues: querySpecifyQueue includeDeadletter=true → redrive_policy enable, max_consume_count 5")
    def _():
        q = env_B(c.query_specify_queue(need(S, "q1"), "true"))
        eq(sorted(q), dl_keys, "queue keys")
        eq((q["redrive_policy"], q["max_consume_count"]), ("enable", 5), "redrive")

    @check("queues: querySpecifyQueue with the queue id in upper case → found")
    def _():
        eq(env_B(c.query_specify_queue(need(S, "q1").upper()))["id"], S["q1"], "id")

    @check("queues: querySpecifyQueue with another regionId → found (region ignored on id lookups)")
    def _():
        eq(env_B(c.query_specify_queue(need(S, "q1"), region="cn-other-1"))["id"], S["q1"], "id")

    @check("queues: queryQueue / queryQuota in another region → empty (per-region listing)")
    def _():
        eq(env_D(c.query_queue(region="cn-other-1"))["total"], 0, "total in cn-other-1")
        eq(env_D(c.query_quota(region="cn-other-1"))["quotas"]["resources"][0]["used"], 0, "used in cn-other-1")

    @check("queues: querySpecifyQueue unknown id → 900 DMS.QueueNotFound, failure envelope")
    def _():
        fail900(c.query_specify_queue(str(uuid.uuid4())), "DMS.QueueNotFound")

    @check("queues: 6th createQueue → HTTP 200, 900 DMS.QueueQuotaExceeded")
    def _():
        fail900(c.create_queue("conf-sixth", "NORMAL", "x"), "DMS.QueueQuotaExceeded")

    @check("queues: the refused 6th create made nothing (total 5, name absent, quota used 5)")
    def _():
        p = env_D(c.query_queue())
        eq(p["total"], 5, "total")
        ensure("conf-sixth" not in [q["name"] for q in p["queues"]], "conf-sixth was created")
        eq(env_D(c.query_quota())["quotas"]["resources"][0]["used"], 5, "quota used")

    @check("queues: produced_messages and group_count are live")
    def _():
        q1 = need(S, "q1")
        env_D(c.send(q1, [{"body": "a"}, {"body": "b"}]))
        ar.mkgroups(q1, ["g1"])
        q = env_B(c.query_specify_queue(q1))
        eq((q["produced_messages"], q["group_count"]), (2, 1), "(produced_messages, group_count)")
        q = [x for x in env_D(c.query_queue())["queues"] if x["id"] == q1][0]
        eq((q["produced_messages"], q["group_count"]), (2, 1), "queryQueue (produced_messages, group_count)")

    @check("queues: removeQueue → envelope C exactly")
    def _():
        env_C(c.remove_queue(need(S, "q5")))

    @check("queues: removed queue → querySpecifyQueue 900 DMS.QueueNotFound, removeQueue again 900")
    def _():
        q5 = need(S, "q5")
        fail900(c.query_specify_queue(q5), "DMS.QueueNotFound")
        fail900(c.remove_queue(q5), "DMS.QueueNotFound")

    @check("queues: queryQuota used follows removal (4), and the freed slot can be used")
    def _():
        eq(env_D(c.query_quota())["quotas"]["resources"][0]["used"], 4, "quota used")
        S["q6"] = ar.mkq("conf-again", "NORMAL", "x")
        eq(env_D(c.query_quota())["quotas"]["resources"][0]["used"], 5, "quota used")

    @check("queues: removeQueue deletes the queue's groups (consume → 900)")
    def _():
        q1 = need(S, "q1")
        gid = env_D(c.query_groups(q1))["groups"][0]["id"]
        env_C(c.remove_queue(q1))
        fail900(c.consume(gid, None))

    @check("queues: a queue name can be reused after removal")
    def _():
        ar.mkq("conf-normal", "NORMAL", "x")

    ar.cleanup()


def area_groups():
    ar = Area("groups")
    c = ar.c
    S = {}
    gkeys = sorted(["id", "name", "produced_messages", "consumed_messages", "available_messages"])
    gkeys_dl = sorted(gkeys + ["produced_deadletters", "available_deadletters"])

    @check("groups: setup (two queues)")
    def _():
        S["qg"] = ar.mkq("conf-g", "NORMAL", "x", "enable", "3")
        S["qh"] = ar.mkq("conf-h", "NORMAL", "x")

    @check("groups: createConsumeGroup two groups → envelope D {regionId,queueId,consumerGroupId,maxMsgs,timeWait,ackWait,groups}")
    def _():
        qg = need(S, "qg")
        p = env_D(c.create_groups(qg, [{"name": "alpha"}, {"name": "beta"}]))
        eq(sorted(p), sorted(["regionId", "queueId", "consumerGroupId", "maxMsgs", "timeWait", "ackWait", "groups"]), "payload keys")
        eq((p["regionId"], p["queueId"], p["maxMsgs"], p["timeWait"], p["ackWait"]), (REGION, qg, "10", "3", "30s"), "echo fields")
        ensure(isinstance(p["groups"], list), "groups must be a list")
        for g in p["groups"]:
            eq(sorted(g), ["id", "name"], "group entry keys")
            ensure(g["id"].startswith("g-") and UUID4.match(g["id"][2:]), "group id %r is not g-<uuid4>" % g["id"])
        ids = {g["name"]: g["id"] for g in p["groups"]}
        eq(sorted(ids), ["alpha", "beta"], "group names")
        eq(p["consumerGroupId"], ids["alpha"], "consumerGroupId (= the first new group)")
        S["alpha"], S["beta"] = ids["alpha"], ids["beta"]

    @check("groups: querySpecifyQueueAllConsumerGroup → envelope D {queue_id,queue_name,groups}, exact group keys")
    def _():
        qg = need(S, "qg")
        p = env_D(c.query_groups(qg))
        eq(sorted(p), ["groups", "queue_id", "queue_name"], "payload keys")
        eq((p["queue_id"], p["queue_name"]), (qg, "conf-g"), "queue fields")
        eq(sorted(g["name"] for g in p["groups"]), ["alpha", "beta"], "group names")
        for g in p["groups"]:
            eq(sorted(g), gkeys, "group keys")
            eq((g["produced_messages"], g["consumed_messages"], g["available_messages"]), (0, 0, 0), "counts")

    @check("groups: querySpecifyQueueAllConsumerGroup includeDeadletter=true → redrive_policy + dead-letter counts")
    def _():
        p = env_D(c.query_groups(need(S, "qg"), "true"))
        eq(sorted(p), ["groups", "queue_id", "queue_name", "redrive_policy"], "payload keys")
        eq(p["redrive_policy"], "enable", "redrive_policy")
        for g in p["groups"]:
            eq(sorted(g), gkeys_dl, "group keys")
            eq((g["produced_deadletters"], g["available_deadletters"]), (0, 0), "dead-letter counts")

    @check("groups: duplicate group name → 900 DMS.GroupNameDuplicate")
    def _():
        fail900(c.create_groups(need(S, "qg"), [{"name": "alpha"}]), "DMS.GroupNameDuplicate")

    @check("groups: 2 existing + 2 requested (array of strings) → 900 DMS.GroupQuotaExceeded, nothing created")
    def _():
        qg = need(S, "qg")
        fail900(c.create_groups(qg, ["gamma", "delta"]), "DMS.GroupQuotaExceeded")
        eq(sorted(g["name"] for g in env_D(c.query_groups(qg))["groups"]), ["alpha", "beta"], "groups after refusal")

    @check("groups: a single object {\"name\":…} creates the 3rd group")
    def _():
        p = env_D(c.create_groups(need(S, "qg"), {"name": "gamma"}))
        S["gamma"] = [g for g in p["groups"] if g["name"] == "gamma"][0]["id"]

    @check("groups: a 4th group → 900 DMS.GroupQuotaExceeded")
    def _():
        fail900(c.create_groups(need(S, "qg"), [{"name": "delta"}]), "DMS.GroupQuotaExceeded")

    @check("groups: a bare string creates a group")
    def _():
        p = env_D(c.create_groups(need(S, "qh"), "solo"))
        eq([g["name"] for g in p["groups"] if g["name"] == "solo"], ["solo"], "created group")

    @check("groups: invalid group names (space/!, 33 characters) → 900")
    def _():
        qh = need(S, "qh")
        fail900(c.create_groups(qh, [{"name": "bad name!"}]))
        fail900(c.create_groups(qh, [{"name": "g" * 33}]))
        eq([g["name"] for g in env_D(c.query_groups(qh))["groups"]], ["solo"], "groups")

    @check("groups: a group created after messages starts at the earliest message (available == produced)")
    def _():
        qh = need(S, "qh")
        env_D(c.send(qh, [{"body": i} for i in range(3)]))
        ar.mkgroups(qh, ["late"])
        g = group_stats(c, qh)[0]["late"]
        eq((g["produced_messages"], g["consumed_messages"], g["available_messages"]), (3, 0, 3), "(produced, consumed, available)")

    @check("groups: group_count in querySpecifyQueue")
    def _():
        eq(env_B(c.query_specify_queue(need(S, "qg")))["group_count"], 3, "group_count")

    @check("groups: removeSpecifyConsumerGroup by name → envelope C, group gone")
    def _():
        qg = need(S, "qg")
        env_C(c.remove_groups(qg, [{"name": "beta"}]))
        eq(sorted(g["name"] for g in env_D(c.query_groups(qg))["groups"]), ["alpha", "gamma"], "groups")
        eq(env_B(c.query_specify_queue(qg))["group_count"], 2, "group_count")

    @check("groups: a removed group's id → consume 900 DMS.GroupNotFound")
    def _():
        fail900(c.consume(need(S, "beta"), S["qg"]), "DMS.GroupNotFound")

    @check("groups: remove with one unknown name → 900, all-or-nothing (the known one stays)")
    def _():
        qg = need(S, "qg")
        fail900(c.remove_groups(qg, [{"name": "alpha"}, {"name": "nope"}]))
        eq(sorted(g["name"] for g in env_D(c.query_groups(qg))["groups"]), ["alpha", "gamma"], "groups")

    @check("groups: remove by {\"id\": …} → 800")
    def _():
        qg = need(S, "qg")
        env_C(c.remove_groups(qg, [{"id": need(S, "gamma")}]))
        eq([g["name"] for g in env_D(c.query_groups(qg))["groups"]], ["alpha"], "groups")

    @check("groups: removal frees quota (two more groups fit again)")
    def _():
        ar.mkgroups(need(S, "qg"), ["delta", "epsilon"])

    @check("groups: createConsumeGroup / querySpecifyQueueAllConsumerGroup / removeSpecifyConsumerGroup on an unknown queue → 900 DMS.QueueNotFound")
    def _():
        q = str(uuid.uuid4())
        fail900(c.create_groups(q, [{"name": "x"}]), "DMS.QueueNotFound")
        fail900(c.query_groups(q), "DMS.QueueNotFound")
        fail900(c.remove_groups(q, [{"name": "x"}]), "DMS.QueueNotFound")

    @check("groups: createConsumeGroup with a leading space in queueId (doc example) → accepted")
    def _():
        qh = need(S, "qh")
        env_D(c.create_groups(" " + qh, [{"name": "spaced"}]))

    ar.cleanup()


def area_messages():
    ar = Area("messages")
    c = ar.c
    S = {}
    sent = [
        {"body": {"invoice": 17, "lines": [1, 2]}, "attributes": {"source": "erp", "k": "v"}, "tags": ["urgent"]},
        {"body": "plain text"},
        {"body": "中文消息 ✓", "attributes": {"lang": "zh"}},
        {"body": 42, "tags": ["a", "b", "c"]},
    ]

    @check("messages: setup (queue, group)")
    def _():
        info = env_A(c.create_queue("conf-m", "NORMAL", "x"))
        ar.made.append((c, info["id"]))
        S["qm"], S["project"] = info["id"], info["project_id"]
        S["gm"], S["gm2"] = ar.mkgroups(S["qm"], ["gm", "gm2"])

    @check("messages: sendSpecifyQueueMessage → envelope D {messages:[{error:null,error_code:null,state:0}…]} in order")
    def _():
        p = env_D(c.send(need(S, "qm"), sent))
        eq(sorted(p), ["messages"], "payload keys")
        eq(p["messages"], [{"error": None, "error_code": None, "state": 0}] * len(sent), "per-message states")

    @check("messages: consumptionMessage → envelope B, inner JSON string array of {handler, message{body,attributes,tags}}")
    def _():
        qm, gm = need(S, "qm", "gm")
        items = items_of(c.consume(gm, qm, max_msgs="10"))
        eq(len(items), len(sent), "number of messages")
        want = [(m["body"], m.get("attributes", {}), m.get("tags", [])) for m in sent]
        got = [(it["message"]["body"], it["message"]["attributes"], it["message"]["tags"]) for it in items]
        eq(sorted(map(_key, got)), sorted(map(_key, want)), "(body, attributes, tags) as sent; {} / [] when absent")
        S["items"] = items

    @check("messages: handler = standard base64 of JSON {topic,group,partition,consumerId,consumerVersion,offset,tagList,tagType,redeliverTimes}")
    def _():
        items = need(S, "items")
        infos = [handler_info(h) for h in handlers(items)]
        for d in infos:
            eq(sorted(d), HANDLER_KEYS, "handler keys")
            eq(d["group"], S["gm"], "handler group")
            eq(d["topic"], "q-%s-%s" % (S["project"], S["qm"]), "handler topic")
            eq(d["redeliverTimes"], 0, "redeliverTimes")
            for k in ("partition", "consumerVersion", "offset", "redeliverTimes"):
                ensure(is_int(d[k]), "handler %s must be a number" % k)
            ensure(isinstance(d["tagList"], list) and isinstance(d["tagType"], str), "tagList/tagType types")
        eq(len(set(d["offset"] for d in infos)), len(infos), "distinct offsets")
        eq(len(set(d["consumerId"] for d in infos)), len(infos), "distinct consumerIds (one per delivery)")

    @check("messages: in-flight messages are not delivered again to the same group (consume → [])")
    def _():
        eq(items_of(c.consume(need(S, "gm"), S["qm"], time_wait="1")), [], "second consume")

    @check("messages: the other group (fan-out) gets every message too")
    def _():
        items = items_of(c.consume(need(S, "gm2"), S["qm"]))
        eq(sorted(map(_key, bodies(items))), sorted(_key(m["body"]) for m in sent), "bodies for group 2")
        S["items2"] = items

    @check("messages: confirmConsumedSpecifiedMessage all success → envelope B {success:4, fail:0}")
    def _():
        eq(counts(c.confirm(S["qm"], S["gm"], entries(handlers(need(S, "items"))))), (4, 0), "(success, fail)")

    @check("messages: counts after group 1 acked everything and group 2 holds leases")
    def _():
        st = group_stats(c, need(S, "qm"))[0]
        g1, g2 = st["gm"], st["gm2"]
        eq((g1["produced_messages"], g1["consumed_messages"], g1["available_messages"]), (4, 4, 0), "group 1 (produced, consumed, available)")
        eq((g2["produced_messages"], g2["consumed_messages"], g2["available_messages"]), (4, 0, 4), "group 2 (in-flight counted available)")

    @check("messages: confirming group 2's first two → consumed 2, available 2")
    def _():
        it = need(S, "items2")
        eq(counts(c.confirm(S["qm"], S["gm2"], entries(handlers(it[:2])))), (2, 0), "(success, fail)")
        g2 = group_stats(c, S["qm"])[0]["gm2"]
        eq((g2["consumed_messages"], g2["available_messages"]), (2, 2), "group 2 (consumed, available)")

    @check("messages: confirm an already-acked handler → counts as fail")
    def _():
        eq(counts(c.confirm(S["qm"], S["gm"], entries(handlers(need(S, "items"))[:1]))), (0, 1), "(success, fail)")

    @check("messages: confirm a handler of another group → fail, changes nothing")
    def _():
        it2 = need(S, "items2")
        eq(counts(c.confirm(S["qm"], S["gm"], entries([it2[2]["handler"]]))), (0, 1), "(success, fail)")
        eq(counts(c.confirm(S["qm"], S["gm2"], entries(handlers(it2[2:]), ["SUCCESS", "Success"]))), (2, 0), "group 2's own confirm (status case-insensitive)")

    @check("messages: confirm with a garbage handler → {success:0, fail:1}")
    def _():
        eq(counts(c.confirm(need(S, "qm"), S["gm"], entries(["not-a-handler"]))), (0, 1), "(success, fail)")

    @check("messages: confirm with a forged handler (offset changed) → fail")
    def _():
        env_D(c.send(S["qm"], [{"body": "forge-1"}, {"body": "forge-2"}]))
        items = expect_items(c, S["gm"], S["qm"], ["forge-1", "forge-2"])
        d = handler_info(items[0]["handler"])
        other = handler_info(items[1]["handler"])
        d["offset"] = other["offset"]
        forged = base64.b64encode(json.dumps(d, separators=(",", ":")).encode()).decode()
        eq(counts(c.confirm(S["qm"], S["gm"], entries([forged]))), (0, 1), "(success, fail) for the forged handler")
        ack_all(c, S["qm"], S["gm"], items)

    @check("messages: confirm an empty list → {success:0, fail:0}")
    def _():
        eq(counts(c.confirm(need(S, "qm"), S["gm"], [])), (0, 0), "(success, fail)")

    @check("messages: confirm a single object (not a list) → accepted")
    def _():
        env_D(c.send(S["qm"], [{"body": "single"}]))
        items = expect_items(c, S["gm"], S["qm"], ["single"])
        eq(counts(c.confirm(S["qm"], S["gm"], {"handler": items[0]["handler"], "status": "success"})), (1, 0), "(success, fail)")

    @check("messages: confirm / consume with an unknown group → 900 DMS.GroupNotFound")
    def _():
        g = "g-" + str(uuid.uuid4())
        fail900(c.confirm(S["qm"], g, []), "DMS.GroupNotFound")
        fail900(c.consume(g, S["qm"]), "DMS.GroupNotFound")

    @check("messages: consume with a queueId that does not own the group → 900")
    def _():
        fail900(c.consume(need(S, "gm"), str(uuid.uuid4())))

    @check("messages: consume without queueId (group id alone) → 800")
    def _():
        env_D(c.send(S["qm"], [{"body": "noqid"}]))
        items = items_of(c.consume(need(S, "gm"), None))
        eq(bodies(items), ["noqid"], "bodies")
        ack_all(c, S["qm"], S["gm"], items)

    @check("messages: sendSpecifyQueueMessage to an unknown queue → 900 DMS.QueueNotFound")
    def _():
        fail900(c.send(str(uuid.uuid4()), [{"body": "x"}]), "DMS.QueueNotFound")

    @check("messages: maxMsgs 50 is clamped to 10 (12 ready → 10 returned)")
    def _():
        env_D(c.send(S["qm"], [{"body": "c%d" % i} for i in range(12)]))
        items = items_of(c.consume(S["gm"], S["qm"], max_msgs="50"))
        eq(len(items), 10, "returned")
        ack_all(c, S["qm"], S["gm"], items)

    @check("messages: maxMsgs as a JSON number 1 → 1; maxMsgs \"0\" clamped to 1 → 1")
    def _():
        items = items_of(c.consume(S["gm"], S["qm"], max_msgs=1))
        eq(len(items), 1, "returned for maxMsgs 1")
        ack_all(c, S["qm"], S["gm"], items)
        items = items_of(c.consume(S["gm"], S["qm"], max_msgs="0"))
        eq(len(items), 1, "returned for maxMsgs 0")
        ack_all(c, S["qm"], S["gm"], items)

    @check("messages: 4 tags in one message → 900, nothing stored (not even the valid message before it)")
    def _():
        before = env_B(c.query_specify_queue(S["qm"]))["produced_messages"]
        fail900(c.send(S["qm"], [{"body": "ok"}, {"body": "bad", "tags": ["a", "b", "c", "d"]}]))
        eq(env_B(c.query_specify_queue(S["qm"]))["produced_messages"], before, "produced_messages")

    @check("messages: a 65-character tag → 900, nothing stored")
    def _():
        before = env_B(c.query_specify_queue(S["qm"]))["produced_messages"]
        fail900(c.send(S["qm"], [{"body": "bad", "tags": ["t" * 65]}]))
        eq(env_B(c.query_specify_queue(S["qm"]))["produced_messages"], before, "produced_messages")

    @check("messages: messages = [] → 400")
    def _():
        bad400(c.send(S["qm"], []))

    @check("messages: form-encoded POST (messages as JSON text) → 800 and consumable")
    def _():
        env_D(c.send(S["qm"], [{"body": {"via": "form+&="}, "attributes": {"a": "1"}}], encoding="form"))
        items = items_of(c.consume(S["gm"], S["qm"]))
        eq(bodies(items), [{"via": "form+&="}], "bodies")
        eq(items[0]["message"]["attributes"], {"a": "1"}, "attributes")
        eq(counts(c.confirm(S["qm"], S["gm"], entries(handlers(items)), encoding="form")), (1, 0), "form-encoded confirm")

    @check("messages: messages given as a JSON string inside the JSON body → 800")
    def _():
        env_D(c.send(S["qm"], json.dumps([{"body": "stringified"}])))
        items = expect_items(c, S["gm"], S["qm"], ["stringified"])
        ack_all(c, S["qm"], S["gm"], items)

    # --- sizes (512 KiB per send request and per consume response)
    @check("messages: size setup (queue, group)")
    def _():
        S["qb"] = ar.mkq("conf-big", "NORMAL", "x")
        S["gb"] = ar.mkgroups(S["qb"], ["gb"])[0]

    @check("messages: a send whose messages JSON is > 512 KiB → 900 DMS.MessageTooLarge, nothing stored")
    def _():
        qb = need(S, "qb")
        fail900(c.send(qb, [{"body": "x" * 524288}]), "DMS.MessageTooLarge")
        eq(env_B(c.query_specify_queue(qb))["produced_messages"], 0, "produced_messages")

    @check("messages: the limit is per request (3 × 200 KB) → 900 DMS.MessageTooLarge, nothing stored")
    def _():
        qb = need(S, "qb")
        fail900(c.send(qb, [{"body": "y" * 200000} for _ in range(3)]), "DMS.MessageTooLarge")
        eq(env_B(c.query_specify_queue(qb))["produced_messages"], 0, "produced_messages")

    @check("messages: a 500 000-byte body (under the limit) → 800 and consumed intact")
    def _():
        qb, gb = need(S, "qb", "gb")
        env_D(c.send(qb, [{"body": "z" * 500000}]))
        items = items_of(c.consume(gb, qb))
        eq([len(b) for b in bodies(items)], [500000], "body lengths")
        ensure(bodies(items)[0] == "z" * 500000, "body changed")
        ack_all(c, qb, gb, items)

    @check("messages: one consume response stays ≤ 512 KiB (2 × 300 KB ready → 1, then 1)")
    def _():
        qb, gb = need(S, "qb", "gb")
        env_D(c.send(qb, [{"body": "p" * 300000}]))
        env_D(c.send(qb, [{"body": "q" * 300000}]))
        first = items_of(c.consume(gb, qb))
        eq(len(first), 1, "messages in the first response")
        second = items_of(c.consume(gb, qb))
        eq(len(second), 1, "messages in the second response")
        eq(sorted(b[0] for b in bodies(first + second)), ["p", "q"], "both delivered")
        ack_all(c, qb, gb, first + second)

    ar.cleanup()


def area_delivery():
    ar = Area("delivery")
    c = ar.c
    S = {}

    @check("delivery: setup (NORMAL queue without redrive, FIFO queue)")
    def _():
        S["q"] = ar.mkq("conf-r", "NORMAL", "x", "disable")
        S["g"] = ar.mkgroups(S["q"], ["g"])[0]
        S["qf"] = ar.mkq("conf-f", "FIFO", "x")
        S["gf"] = ar.mkgroups(S["qf"], ["gf"])[0]

    @check("delivery: a failed confirm → {success:0, fail:1} and the message is redelivered at once (redeliverTimes 1)")
    def _():
        q, g = need(S, "q", "g")
        env_D(c.send(q, [{"body": "m1"}]))
        first = expect_items(c, g, q, ["m1"])
        eq(handler_info(first[0]["handler"])["redeliverTimes"], 0, "redeliverTimes first")
        eq(counts(c.confirm(q, g, entries(handlers(first), ["fail"]))), (0, 1), "(success, fail)")
        again = expect_items(c, g, q, ["m1"])
        ensure(again[0]["handler"] != first[0]["handler"], "redelivery reused the handler")
        eq(handler_info(again[0]["handler"])["redeliverTimes"], 1, "redeliverTimes after one failure")
        S["old"], S["new"] = first[0]["handler"], again[0]["handler"]

    @check("delivery: the first delivery's handler is dead after redelivery (confirm → fail)")
    def _():
        eq(counts(c.confirm(S["q"], S["g"], entries([need(S, "old")]))), (0, 1), "(success, fail)")

    @check("delivery: the redelivery's handler confirms → {success:1, fail:0}")
    def _():
        eq(counts(c.confirm(S["q"], S["g"], entries([need(S, "new")]))), (1, 0), "(success, fail)")

    @check("delivery: batch [success, fail, success] → {success:1, fail:2}; the 2nd AND 3rd are redelivered")
    def _():
        q, g = need(S, "q", "g")
        env_D(c.send(q, [{"body": "a"}, {"body": "b"}, {"body": "c"}]))
        items = expect_items(c, g, q, ["a", "b", "c"])
        items.sort(key=lambda it: handler_info(it["handler"])["offset"])
        eq(bodies(items), ["a", "b", "c"], "offset order")
        eq(counts(c.confirm(q, g, entries(handlers(items), ["success", "fail", "success"]))), (1, 2), "(success, fail)")
        again = expect_items(c, g, q, ["b", "c"])
        eq(sorted(handler_info(h)["redeliverTimes"] for h in handlers(again)), [1, 1], "redeliverTimes")
        ack_all(c, q, g, again)

    @check("delivery: batch [success, invalid handler, success] → {success:1, fail:2}; the 3rd is redelivered, an omitted one stays leased")
    def _():
        q, g = need(S, "q", "g")
        env_D(c.send(q, [{"body": "d"}, {"body": "e"}, {"body": "f"}]))
        items = expect_items(c, g, q, ["d", "e", "f"])
        by = {it["message"]["body"]: it["handler"] for it in items}
        eq(counts(c.confirm(q, g, entries([by["d"], "bogus-handler", by["f"]]))), (1, 2), "(success, fail)")
        again = expect_items(c, g, q, ["f"])
        eq(counts(c.confirm(q, g, entries([by["e"], again[0]["handler"]]))), (2, 0), "acking e (original lease) and f")

    @check("delivery: counts after the batches (produced 7, consumed 7, available 0)")
    def _():
        g = group_stats(c, need(S, "q"))[0]["g"]
        eq((g["produced_messages"], g["consumed_messages"], g["available_messages"]), (7, 7, 0), "(produced, consumed, available)")

    @check("delivery: NORMAL queue delivers past an in-flight message")
    def _():
        q, g = need(S, "q", "g")
        env_D(c.send(q, [{"body": "n1"}, {"body": "n2"}]))
        one = items_of(c.consume(g, q, max_msgs="1"))
        eq(len(one), 1, "first consume")
        two = items_of(c.consume(g, q, max_msgs="1"))
        eq(len(two), 1, "second consume while the first is leased")
        eq(sorted(bodies(one + two)), ["n1", "n2"], "bodies")
        ack_all(c, q, g, one + two)

    @check("delivery: without redrive, repeated failures never dead-letter (5 failures, still redelivered)")
    def _():
        q, g = need(S, "q", "g")
        env_D(c.send(q, [{"body": "stubborn"}]))
        for i in range(5):
            items = expect_items(c, g, q, ["stubborn"])
            eq(handler_info(items[0]["handler"])["redeliverTimes"], i, "redeliverTimes")
            eq(counts(c.confirm(q, g, entries(handlers(items), ["fail"]))), (0, 1), "(success, fail)")
        items = expect_items(c, g, q, ["stubborn"])
        ack_all(c, q, g, items)

    @check("delivery: consumeDeadlettersMessage on a queue without redrive → envelope B, []")
    def _():
        eq(items_of(c.consume_dl(need(S, "g"), S["q"])), [], "dead letters")

    # --- FIFO
    @check("delivery: FIFO returns a contiguous in-order prefix (maxMsgs 3 → f1 f2 f3)")
    def _():
        qf, gf = need(S, "qf", "gf")
        env_D(c.send(qf, [{"body": "f%d" % i} for i in range(1, 6)]))
        env_D(c.send(qf, [{"body": "f%d" % i} for i in range(6, 9)]))
        items = expect_items(c, gf, qf, ["f1", "f2", "f3"], ordered=True, max_msgs="3")
        offs = [handler_info(h)["offset"] for h in handlers(items)]
        eq(offs, sorted(offs), "handler offsets ascending")
        S["fifo"] = items

    @check("delivery: FIFO delivers nothing while earlier messages are in flight")
    def _():
        eq(bodies(items_of(c.consume(need(S, "gf"), S["qf"], time_wait="1"))), [], "consume while f1..f3 leased")

    @check("delivery: FIFO batch [f1 success, f2 fail, f3 success] → {1,2}; then f2..f8 in order")
    def _():
        qf, gf = need(S, "qf", "gf")
        items = need(S, "fifo")
        eq(counts(c.confirm(qf, gf, entries(handlers(items), ["success", "fail", "success"]))), (1, 2), "(success, fail)")
        again = expect_items(c, gf, qf, ["f%d" % i for i in range(2, 9)], ordered=True)
        eq([handler_info(h)["redeliverTimes"] for h in handlers(again)[:2]], [1, 1], "redeliverTimes of f2, f3")
        ack_all(c, qf, gf, again)

    @check("delivery: FIFO queue drained → []")
    def _():
        eq(items_of(c.consume(need(S, "gf"), S["qf"], time_wait="1")), [], "after acking all")

    ar.cleanup()


def area_deadletters():
    ar = Area("deadletters")
    c = ar.c
    S = {}

    @check("deadletters: setup (redrive enable, maxConsumeCount 2; two messages)")
    def _():
        S["q"] = ar.mkq("conf-dl", "NORMAL", "x", "enable", "2")
        S["g"] = ar.mkgroups(S["q"], ["g"])[0]
        env_D(c.send(S["q"], [{"body": "x", "attributes": {"n": "1"}, "tags": ["t1"]}, {"body": "y"}]))

    @check("deadletters: two failing rounds (the 2nd entry failing by cascade) → both dead-lettered, not redelivered")
    def _():
        q, g = need(S, "q", "g")
        for rnd in range(2):
            items = expect_items(c, g, q, ["x", "y"])
            items.sort(key=lambda it: handler_info(it["handler"])["offset"])
            eq(counts(c.confirm(q, g, entries(handlers(items), ["fail", "success"]))), (0, 2), "(success, fail) round %d" % (rnd + 1))
        eq(items_of(c.consume(g, q, time_wait="1")), [], "normal consume after maxConsumeCount failures")

    @check("deadletters: counts with includeDeadletter (produced_deadletters 2, available_deadletters 2, available_messages 0)")
    def _():
        st, p = group_stats(c, need(S, "q"), "true")
        g = st["g"]
        eq(p["redrive_policy"], "enable", "redrive_policy")
        eq((g["produced_messages"], g["consumed_messages"], g["available_messages"], g["produced_deadletters"], g["available_deadletters"]),
           (2, 0, 0, 2, 2), "(produced, consumed, available, produced_dl, available_dl)")

    @check("deadletters: consumeDeadlettersMessage maxMsgs 1 → envelope B, one item, handler consumerId 'dl-…'")
    def _():
        q, g = need(S, "q", "g")
        items = items_of(c.consume_dl(g, q, max_msgs="1"))
        eq(len(items), 1, "items")
        d = handler_info(items[0]["handler"])
        ensure(str(d.get("consumerId", "")).startswith("dl-"), "consumerId %r does not start with dl-" % d.get("consumerId"))
        eq(d.get("group"), g, "handler group")
        S["dl1"] = items[0]

    @check("deadletters: the dead letter keeps body, attributes and tags")
    def _():
        first = need(S, "dl1")
        q, g = S["q"], S["g"]
        rest = items_of(c.consume_dl(g, q))
        eq(len(rest), 1, "the other dead letter (the first is leased)")
        allm = {it["message"]["body"]: it["message"] for it in [first] + rest}
        eq(sorted(allm), ["x", "y"], "dead-letter bodies")
        eq(allm["x"], {"body": "x", "attributes": {"n": "1"}, "tags": ["t1"]}, "message x")
        S["dl2"] = rest[0]

    @check("deadletters: confirmConsumeDeadlettersMessage status \"false\" (doc's wrapper {\"message\":[…]}) → {0,1}; it becomes available again")
    def _():
        q, g = need(S, "q", "g")
        dl1 = need(S, "dl1")
        eq(counts(c.confirm_dl(g, q, entries([dl1["handler"]], ["false"]), wrap=True)), (0, 1), "(success, fail)")
        again = items_of(c.consume_dl(g, q))
        eq(bodies(again), [dl1["message"]["body"]], "redelivered dead letter")
        S["dl1b"] = again[0]

    @check("deadletters: confirmConsumeDeadlettersMessage success (bare array) → {2,0}")
    def _():
        q, g = need(S, "q", "g")
        eq(counts(c.confirm_dl(g, q, entries([need(S, "dl1b")["handler"], need(S, "dl2")["handler"]]), wrap=False)), (2, 0), "(success, fail)")

    @check("deadletters: after confirming, available_deadletters 0, produced_deadletters 2; consume → []")
    def _():
        q, g = need(S, "q", "g")
        st = group_stats(c, q, "true")[0]["g"]
        eq((st["produced_deadletters"], st["available_deadletters"]), (2, 0), "(produced_dl, available_dl)")
        eq(items_of(c.consume_dl(g, q)), [], "dead letters")

    @check("deadletters: confirming a dead-letter handler twice → fail")
    def _():
        eq(counts(c.confirm_dl(S["g"], S["q"], entries([need(S, "dl2")["handler"]]))), (0, 1), "(success, fail)")

    @check("deadletters: consumeDeadlettersMessage without queueId → 800")
    def _():
        eq(items_of(c.consume_dl(need(S, "g"), None)), [], "dead letters")

    @check("deadletters: unknown group → consumeDeadlettersMessage / confirmConsumeDeadlettersMessage 900 DMS.GroupNotFound")
    def _():
        gx = "g-" + str(uuid.uuid4())
        fail900(c.consume_dl(gx, S.get("q")), "DMS.GroupNotFound")
        fail900(c.confirm_dl(gx, S.get("q"), []), "DMS.GroupNotFound")

    @check("deadletters: a normal handler is not accepted by the dead-letter confirm")
    def _():
        q, g = need(S, "q", "g")
        env_D(c.send(q, [{"body": "normal"}]))
        items = expect_items(c, g, q, ["normal"])
        eq(counts(c.confirm_dl(g, q, entries(handlers(items)))), (0, 1), "(success, fail)")
        ack_all(c, q, g, items)

    ar.cleanup()


def area_tags():
    ar = Area("tags")
    c = ar.c
    S = {}
    msgs = [("m1", ["a"]), ("m2", ["a", "b"]), ("m3", ["b", "c"]), ("m4", []), ("m5", ["c"])]

    @check("tags: setup (queue, groups or/and/none, five tagged messages)")
    def _():
        S["q"] = ar.mkq("conf-t", "NORMAL", "x")
        S["gor"], S["gand"], S["gnone"] = ar.mkgroups(S["q"], ["gor", "gand", "gnone"])
        env_D(c.send(S["q"], [{"body": b, "tags": t} if t else {"body": b} for b, t in msgs]))

    @check("tags: tagType or, tags [a,b] → messages with any of them (m1 m2 m3)")
    def _():
        items = expect_items(c, need(S, "gor"), S["q"], ["m1", "m2", "m3"], tags=["a", "b"], tag_type="or")
        d = handler_info(items[0]["handler"])
        eq((d["tagList"], d["tagType"]), (["a", "b"], "or"), "handler tagList/tagType")
        S["or_items"] = items

    @check("tags: tagType and, tags [a,b] → messages with all of them (m2)")
    def _():
        S["and_items"] = expect_items(c, need(S, "gand"), S["q"], ["m2"], tags=["a", "b"], tag_type="and")

    @check("tags: no tags → every message (m1..m5)")
    def _():
        S["none_items"] = expect_items(c, need(S, "gnone"), S["q"], ["m1", "m2", "m3", "m4", "m5"])

    rule_changes = [
        ("gor", "tags [a]", dict(tags=["a"], tag_type="or")),
        ("gor", "tagType and", dict(tags=["a", "b"], tag_type="and")),
        ("gor", "no tags", dict()),
        ("gand", "tagType or", dict(tags=["a", "b"], tag_type="or")),
        ("gnone", "tags [a] after consuming without tags", dict(tags=["a"])),
    ]
    for grp, what, kw in rule_changes:
        @check("tags: %s consuming again with a different rule (%s) → 900 DMS.TagRuleChanged" % (grp, what))
        def _():
            fail900(c.consume(need(S, grp), S["q"], **kw), "DMS.TagRuleChanged")

    @check("tags: acking, then counts: filtered-out messages are not available (gor 3/0, gand 1/0, gnone 5/0)")
    def _():
        q = need(S, "q")
        ack_all(c, q, S["gor"], need(S, "or_items"))
        ack_all(c, q, S["gand"], need(S, "and_items"))
        ack_all(c, q, S["gnone"], need(S, "none_items"))
        st = group_stats(c, q)[0]
        got = {n: (st[n]["consumed_messages"], st[n]["available_messages"]) for n in ("gor", "gand", "gnone")}
        eq(got, {"gor": (3, 0), "gand": (1, 0), "gnone": (5, 0)}, "(consumed, available) per group")

    @check("tags: new messages follow the fixed rules (m6 [a], m7 [b,a]); same rule as a comma string / other order → accepted")
    def _():
        q = need(S, "q")
        env_D(c.send(q, [{"body": "m6", "tags": ["a"]}, {"body": "m7", "tags": ["b", "a"]}]))
        it_or = expect_items(c, S["gor"], q, ["m6", "m7"], tags="a,b", tag_type="or")
        it_and = expect_items(c, S["gand"], q, ["m7"], tags=["b", "a"], tag_type="and")
        it_none = expect_items(c, S["gnone"], q, ["m6", "m7"])
        ack_all(c, q, S["gor"], it_or)
        ack_all(c, q, S["gand"], it_and)
        ack_all(c, q, S["gnone"], it_none)

    @check("tags: tagType defaults to or (tags [a,b] without tagType = the or rule)")
    def _():
        eq(items_of(c.consume(need(S, "gor"), S["q"], tags=["a", "b"])), [], "consume with the default tagType")

    @check("tags: the tag rule survives consumeReset (gand replays m2 m7; the or rule is still refused)")
    def _():
        q, g = need(S, "q", "gand")
        eq(env_B(c.reset(g, q, "earliest", True)), {"status": "success"}, "reset result")
        items = expect_items(c, g, q, ["m2", "m7"], tags=["a", "b"], tag_type="and")
        ack_all(c, q, g, items)
        fail900(c.consume(g, q, tags=["a", "b"], tag_type="or"), "DMS.TagRuleChanged")

    ar.cleanup()


def area_reset():
    ar = Area("reset")
    c = ar.c
    S = {}

    def replay(name, ts, want, force=None):
        @check("reset: timestamp %s → %s" % (name, "[]" if not want else " ".join(want)))
        def _():
            q, g = need(S, "q", "g")
            stamp = ts(need(S, "T")) if callable(ts) else ts
            eq(env_B(c.reset(g, q, stamp, force)), {"status": "success"}, "inner returnObj")
            items = items_of(c.consume(g, q, time_wait="1"))
            eq(sorted(bodies(items)), sorted(want), "consumed after reset")
            ack_all(c, q, g, items)

    @check("reset: setup (A1 A2, then after a whole-second boundary T, B1 B2)")
    def _():
        S["q"] = ar.mkq("conf-reset", "NORMAL", "x")
        S["g"], S["g2"] = ar.mkgroups(S["q"], ["g", "g2"])
        while not (0.05 <= time.time() % 1 <= 0.6):
            time.sleep(0.05)
        env_D(c.send(S["q"], [{"body": "A1"}, {"body": "A2"}]))
        now = time.time()
        time.sleep(1 - now % 1 + 0.3)
        S["T"] = int(time.time())
        env_D(c.send(S["q"], [{"body": "B1"}, {"body": "B2"}]))

    @check("reset: consume and ack everything, then the group is empty")
    def _():
        q, g = need(S, "q", "g")
        items = expect_items(c, g, q, ["A1", "A2", "B1", "B2"])
        ack_all(c, q, g, items)
        eq(items_of(c.consume(g, q, time_wait="1")), [], "after acking")

    @check("reset: consumeReset → envelope B, inner returnObj the JSON string {\"status\":\"success\"}")
    def _():
        q, g = need(S, "q", "g")
        eq(env_B(c.reset(g, q, "earliest")), {"status": "success"}, "inner returnObj")
        items = expect_items(c, g, q, ["A1", "A2", "B1", "B2"])
        ack_all(c, q, g, items)

    replay("\"0\" (earliest) replays acked messages", "0", ["A1", "A2", "B1", "B2"])
    replay("\"latest\"", "latest", [])

    @check("reset: after latest, only new messages are delivered (C1)")
    def _():
        q, g = need(S, "q", "g")
        env_D(c.send(q, [{"body": "C1"}]))
        ack_all(c, q, g, expect_items(c, g, q, ["C1"]))

    replay("\"1\" (latest)", "1", [])

    @check("reset: counts after latest (g available 0; g2, never consumed, still has all 5)")
    def _():
        st = group_stats(c, need(S, "q"))[0]
        eq(st["g"]["available_messages"], 0, "g available")
        eq((st["g2"]["consumed_messages"], st["g2"]["available_messages"]), (0, 5), "g2 (consumed, available)")

    after = ["B1", "B2", "C1"]
    replay("epoch seconds T", lambda T: str(T), after)
    replay("epoch milliseconds T", lambda T: str(T * 1000), after)
    replay("RFC 1123 date T (GMT)", lambda T: cc.http_date(T), after)
    replay("ISO-8601 T (Z)", lambda T: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T)), after)
    replay("before retention (2001) clamps to earliest", "1000000000", ["A1", "A2", "B1", "B2", "C1"])

    @check("reset: a future time → 900 DMS.InvalidTimestamp")
    def _():
        q, g = need(S, "q", "g")
        fail900(c.reset(g, q, str(int(time.time() * 1000) + 3600 * 1000)), "DMS.InvalidTimestamp")

    @check("reset: without force while a delivery is in flight → 900 DMS.GroupConsuming")
    def _():
        q, g = need(S, "q", "g")
        env_B(c.reset(g, q, "earliest"))
        one = items_of(c.consume(g, q, max_msgs="1"))
        eq(len(one), 1, "leased")
        S["leased"] = one[0]
        fail900(c.reset(g, q, "earliest", False), "DMS.GroupConsuming")

    @check("reset: force \"true\" while in flight → 800; the old handler is invalidated; everything replays")
    def _():
        q, g = need(S, "q", "g")
        leased = need(S, "leased")
        eq(env_B(c.reset(g, q, "earliest", "true")), {"status": "success"}, "inner returnObj")
        eq(counts(c.confirm(q, g, entries([leased["handler"]]))), (0, 1), "old handler after forced reset")
        items = expect_items(c, g, q, ["A1", "A2", "B1", "B2", "C1"])
        ack_all(c, q, g, items)

    @check("reset: unknown group → 900 DMS.GroupNotFound")
    def _():
        fail900(c.reset("g-" + str(uuid.uuid4()), S.get("q"), "earliest"), "DMS.GroupNotFound")

    ar.cleanup()


def area_slow():
    """ackWait leases (one ~16 s wait shared by all lease checks) and long polling meanwhile."""
    ar = Area("slow")
    c = ar.c
    S = {}

    @check("leases: setup (no-redrive queue, redrive maxConsumeCount 1 queue, clamp queue, long-poll queue)")
    def _():
        S["q1"] = ar.mkq("conf-l1", "NORMAL", "x", "disable")
        S["g1"] = ar.mkgroups(S["q1"], ["g1"])[0]
        S["q2"] = ar.mkq("conf-l2", "NORMAL", "x", "enable", "1")
        S["g2"] = ar.mkgroups(S["q2"], ["g2"])[0]
        S["q3"] = ar.mkq("conf-l3", "NORMAL", "x")
        S["g3"] = ar.mkgroups(S["q3"], ["g3"])[0]
        S["q4"] = ar.mkq("conf-lp", "NORMAL", "x")
        S["g4"] = ar.mkgroups(S["q4"], ["g4"])[0]
        for k in ("q1", "q2", "q3"):
            env_D(c.send(S[k], [{"body": "lease-" + k}]))

    @check("leases: consume with ackWait 15 (two queues) and ackWait 5 (clamped to 15)")
    def _():
        q1, g1, q2, g2, q3, g3 = need(S, "q1", "g1", "q2", "g2", "q3", "g3")
        S["l1"] = expect_items(c, g1, q1, ["lease-q1"], ack_wait="15")[0]
        S["l2"] = expect_items(c, g2, q2, ["lease-q2"], ack_wait="15")[0]
        S["l3"] = expect_items(c, g3, q3, ["lease-q3"], ack_wait="5")[0]
        S["t_leased"] = time.monotonic()

    # long polling while the leases run
    @check("long poll: empty queue, timeWait 3 → [] after about 3 s")
    def _():
        r = c.consume(need(S, "g4"), S["q4"], time_wait="3")
        eq(items_of(r), [], "items")
        ensure(2.5 <= r.elapsed <= 6.0, "answered after %.2f s" % r.elapsed)

    @check("long poll: timeWait 10 returns as soon as a message is sent (about 1 s)")
    def _():
        q4, g4 = need(S, "q4", "g4")
        res = {}

        def later():
            time.sleep(1.0)
            try:
                res["send"] = c.send(q4, [{"body": "wake"}])
            except Exception as e:  # noqa: BLE001
                res["error"] = e

        t = threading.Thread(target=later)
        t.start()
        r = c.consume(g4, q4, time_wait="10")
        t.join()
        ensure("error" not in res, "send failed: %s" % res.get("error"))
        env_D(res["send"])
        items = items_of(r)
        eq(bodies(items), ["wake"], "items")
        ensure(0.5 <= r.elapsed <= 5.0, "answered after %.2f s" % r.elapsed)
        ack_all(c, q4, g4, items)

    @check("long poll: timeWait 0 is clamped (800, [] within 3 s)")
    def _():
        r = c.consume(need(S, "g4"), S["q4"], time_wait="0")
        eq(items_of(r), [], "items")
        ensure(r.elapsed <= 3.0, "answered after %.2f s" % r.elapsed)

    t0 = S.get("t_leased")
    if t0 is not None:
        time.sleep(max(0.0, t0 + 7.0 - time.monotonic()))

    @check("leases: ackWait 5 was clamped to 15 (still leased after 7 s)")
    def _():
        need(S, "l3")
        eq(items_of(c.consume(S["g3"], S["q3"], time_wait="1")), [], "consume at ~7 s")

    if t0 is not None:
        time.sleep(max(0.0, t0 + 16.5 - time.monotonic()))

    @check("leases: after ackWait 15 expires the message is redelivered (redeliverTimes 1)")
    def _():
        l1 = need(S, "l1")
        items = expect_items(c, S["g1"], S["q1"], ["lease-q1"])
        eq(handler_info(items[0]["handler"])["redeliverTimes"], 1, "redeliverTimes")
        S["l1b"] = items[0]

    @check("leases: the expired handler no longer confirms (fail); the new one does")
    def _():
        eq(counts(c.confirm(S["q1"], S["g1"], entries([need(S, "l1")["handler"]]))), (0, 1), "expired handler")
        eq(counts(c.confirm(S["q1"], S["g1"], entries([need(S, "l1b")["handler"]]))), (1, 0), "new handler")

    @check("leases: the clamped (ackWait 5 → 15) lease expired by 16.5 s → redelivered")
    def _():
        need(S, "l3")
        items = expect_items(c, S["g3"], S["q3"], ["lease-q3"])
        ack_all(c, S["q3"], S["g3"], items)

    @check("leases: an expiry counts as a failure: maxConsumeCount 1 → dead letter, not redelivered")
    def _():
        q2, g2 = need(S, "q2", "g2")
        need(S, "l2")
        eq(items_of(c.consume(g2, q2, time_wait="1")), [], "normal consume")
        st = group_stats(c, q2, "true")[0]["g2"]
        eq((st["available_messages"], st["produced_deadletters"], st["available_deadletters"]), (0, 1, 1), "(available, produced_dl, available_dl)")
        items = items_of(c.consume_dl(g2, q2))
        eq(bodies(items), ["lease-q2"], "dead letters")
        eq(counts(c.confirm_dl(g2, q2, entries(handlers(items)))), (1, 0), "(success, fail)")

    ar.cleanup()


def area_malformed():
    ar = Area("malformed")
    c = ar.c
    S = {}

    @check("malformed: setup (queue, group)")
    def _():
        S["q"] = ar.mkq("conf-x", "NORMAL", "x")
        S["g"] = ar.mkgroups(S["q"], ["gx"])[0]

    q = S.get("q") or str(uuid.uuid4())
    g = S.get("g") or "g-" + str(uuid.uuid4())
    h = "eyJ0b3BpYyI6InEifQ=="
    missing = [
        ("createQueue", "createQueueInfo", {}),
        ("queryQueue", "regionId", {}),
        ("querySpecifyQueue", "queueId", {"regionId": REGION}),
        ("querySpecifyQueue", "regionId", {"queueId": q}),
        ("removeQueue", "queueId", {"regionId": REGION}),
        ("createConsumeGroup", "groups", {"regionId": REGION, "queueId": q}),
        ("querySpecifyQueueAllConsumerGroup", "queueId", {"regionId": REGION}),
        ("removeSpecifyConsumerGroup", "groups", {"regionId": REGION, "queueId": q}),
        ("sendSpecifyQueueMessage", "messages", {"regionId": REGION, "queueId": q}),
        ("consumptionMessage", "consumerQueueInfo", {}),
        ("confirmConsumedSpecifiedMessage", "message", {"regionId": REGION, "queueId": q, "consumerGroupId": g}),
        ("confirmConsumedSpecifiedMessage", "consumerGroupId", {"regionId": REGION, "queueId": q, "message": entries([h])}),
        ("queryQuota", "regionId", {}),
        ("consumeDeadlettersMessage", "consumedMessageInfo", {}),
        ("confirmConsumeDeadlettersMessage", "consumedMessageInfo", {}),
        ("consumeReset", "consumedMessageInfo", {}),
    ]
    for op, what, params in missing:
        @check("malformed: %s without %s → HTTP 400, statusCode 400" % (op, what))
        def _():
            bad400(c.call(op, params))

    nested = [
        ("consumptionMessage without consumerQueueInfo.consumerGroupId", "consumptionMessage", {"consumerQueueInfo": {"regionId": REGION, "queueId": q}}),
        ("consumeDeadlettersMessage without consumedMessageInfo.consumerGroupId", "consumeDeadlettersMessage", {"consumedMessageInfo": {"regionId": REGION, "queueId": q}}),
        ("confirmConsumeDeadlettersMessage without consumedMessageInfo.message", "confirmConsumeDeadlettersMessage", {"consumedMessageInfo": {"regionId": REGION, "queueId": q, "consumerGroupId": g}}),
        ("consumeReset without config", "consumeReset", {"consumedMessageInfo": {"regionId": REGION, "queueId": q, "consumerGroupId": g}}),
        ("consumeReset without config.timestamp", "consumeReset", {"consumedMessageInfo": {"regionId": REGION, "queueId": q, "consumerGroupId": g, "config": {"force": True}}}),
        ("createQueue without createQueueInfo.name", "createQueue", {"createQueueInfo": {"regionId": REGION, "queueMode": "NORMAL"}}),
        ("consumptionMessage with consumerQueueInfo an array", "consumptionMessage", {"consumerQueueInfo": [1, 2]}),
        ("createQueue with createQueueInfo a number", "createQueue", {"createQueueInfo": 5}),
        ("createQueue with createQueueInfo a string that is not JSON", "createQueue", {"createQueueInfo": "not json"}),
        ("sendSpecifyQueueMessage with messages a number", "sendSpecifyQueueMessage", {"regionId": REGION, "queueId": q, "messages": 42}),
        ("sendSpecifyQueueMessage with messages = []", "sendSpecifyQueueMessage", {"regionId": REGION, "queueId": q, "messages": []}),
        ("createConsumeGroup with groups a number", "createConsumeGroup", {"regionId": REGION, "queueId": q, "groups": 42}),
        ("confirmConsumedSpecifiedMessage with message a number", "confirmConsumedSpecifiedMessage", {"regionId": REGION, "queueId": q, "consumerGroupId": g, "message": 42}),
        ("consumeReset with config a number", "consumeReset", {"consumedMessageInfo": {"regionId": REGION, "queueId": q, "consumerGroupId": g, "config": 7}}),
    ]
    for what, op, params in nested:
        @check("malformed: %s → 400" % what)
        def _():
            bad400(c.call(op, params))

    @check("malformed: consumerQueueInfo header that is not JSON → 400")
    def _():
        bad400(c.call("consumptionMessage", {"consumerQueueInfo": "{not json"}))

    @check("malformed: customInfo header that is not JSON → 400")
    def _():
        bad400(c.query_quota(custom_info="{oops"))

    @check("malformed: truncated JSON body → 400")
    def _():
        p = c.prepare("removeQueue", {"regionId": REGION, "queueId": q})
        p.body = b'{"regionId":"' + REGION.encode() + b'","queueId":'
        bad400(c.send_prepared(p))

    @check("malformed: JSON body that is an array → 400")
    def _():
        p = c.prepare("removeQueue", {"regionId": REGION, "queueId": q})
        p.body = b"[1,2,3]"
        bad400(c.send_prepared(p))

    @check("malformed: form body with a JSON-typed value that is not JSON → 400")
    def _():
        bad400(c.send(q, "{not json", encoding="form"))

    @check("malformed: the queue is untouched by all of the above")
    def _():
        qq = env_B(c.query_specify_queue(need(S, "q")))
        eq((qq["produced_messages"], qq["group_count"]), (0, 1), "(produced_messages, group_count)")

    ar.cleanup()


def area_transport():
    """Request encodings the contract (dialects/ctyun/README.md, Parameters) says the server accepts."""
    ar = Area("transport")
    c = ar.c
    S = {}

    @check("transport: setup (queue, group)")
    def _():
        S["q"] = ar.mkq("conf-tr", "NORMAL", "x")
        S["g"] = ar.mkgroups(S["q"], ["gt"])[0]

    @check("transport: GET params in the query string (no headers) → 800")
    def _():
        p = c.prepare("querySpecifyQueue", {"regionId": REGION, "queueId": need(S, "q")})
        p.headers = [(k, v) for k, v in p.headers if k not in ("regionId", "queueId", "customInfo")]
        p.path += "?" + urllib.parse.urlencode([("regionId", REGION), ("queueId", S["q"]), ("customInfo", cc.compact_json(c.custom_info))])
        eq(env_B(c.send_prepared(p))["id"], S["q"], "id")

    @check("transport: percent-encoded JSON in a GET header → 800")
    def _():
        q, g = need(S, "q", "g")
        env_D(c.send(q, [{"body": "pct"}]))
        info = cc.compact_json({"regionId": REGION, "queueId": q, "consumerGroupId": g, "maxMsgs": "10", "timeWait": "1"})
        p = c.prepare("consumptionMessage", {"consumerQueueInfo": urllib.parse.quote(info, safe="")})
        items = items_of(c.send_prepared(p))
        eq(bodies(items), ["pct"], "bodies")
        ack_all(c, q, g, items)

    @check("transport: JSON body without Content-Type (sniffed) → 800")
    def _():
        p = c.prepare("sendSpecifyQueueMessage", {"regionId": REGION, "queueId": need(S, "q"), "messages": [{"body": "sniffed"}]})
        p.headers = [(k, v) for k, v in p.headers if k != "Content-Type"]
        env_D(c.send_prepared(p))
        items = expect_items(c, S["g"], S["q"], ["sniffed"])
        ack_all(c, S["q"], S["g"], items)

    @check("transport: doc quirks — key ' message ' with spaces, queueId with a leading space → 800")
    def _():
        q, g = need(S, "q", "g")
        env_D(c.send(q, [{"body": "quirk"}]))
        items = expect_items(c, g, q, ["quirk"])
        r = c.call("confirmConsumedSpecifiedMessage", {"regionId": REGION, "queueId": " " + q, "consumerGroupId": g, " message ": entries(handlers(items))})
        eq(counts(r), (1, 0), "(success, fail)")

    @check("transport: numeric consumerQueueInfo values as JSON numbers → 800")
    def _():
        q, g = need(S, "q", "g")
        env_D(c.send(q, [{"body": "nums"}]))
        items = items_of(c.consume(g, q, max_msgs=10, time_wait=1, ack_wait=30))
        eq(bodies(items), ["nums"], "bodies")
        ack_all(c, q, g, items)

    @check("transport: customInfo with a Chinese name (UTF-8 header bytes on GET, UTF-8 JSON on POST) selects the same namespace")
    def _():
        q = need(S, "q")
        zh = dict(c.custom_info, name="张鹏")
        env_B(c.query_specify_queue(q, custom_info=zh))
        env_D(c.send(q, [{"body": "zh"}], custom_info=zh))
        ack_all(c, q, S["g"], expect_items(c, S["g"], q, ["zh"]))

    @check("transport: form-encoded createConsumeGroup and removeSpecifyConsumerGroup → 800")
    def _():
        q = need(S, "q")
        env_D(c.create_groups(q, [{"name": "formgroup"}], encoding="form"))
        env_C(c.remove_groups(q, [{"name": "formgroup"}], encoding="form"))

    ar.cleanup()


AREAS = [area_slow, area_auth, area_queues, area_groups, area_messages, area_delivery, area_deadletters, area_tags, area_reset,
         area_malformed, area_transport]


def run_area(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - should not happen: checks catch their own errors
        report("%s: area aborted" % fn.__name__, False, "%s: %s %s" % (type(e).__name__, e, traceback.format_exc().splitlines()[-3:]))


def main():
    start = time.monotonic()
    for name, ok, detail in cc.self_test():
        report(name, ok, detail)
    threads = [threading.Thread(target=run_area, args=(fn,), name=fn.__name__) for fn in AREAS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sys.stderr.write("# ctyun: %d passed, %d failed in %.1f s\n" % (_counts["pass"], _counts["fail"], time.monotonic() - start))
    return 1 if _counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
