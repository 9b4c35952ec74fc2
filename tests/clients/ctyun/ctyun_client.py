#!/usr/bin/env python3
"""A small, independent client for the CTYun (天翼云) DMS "apiproxy v3" queue API.

Written from the vendor document (CTYun's "消息队列 API" for apiproxy v3) and the contract in
dialects/ctyun/README.md (signing, parameters, operations). Python 3 standard library only. It
shares no code with the qgate server on purpose: a bug common to both would otherwise go unnoticed.

Signing:
  contentMD5 = base64(md5(utf8("\n".join(values))))   values = the business parameters of the
               operation in the doc's table order, absent optional ones skipped, customInfo
               included (last) when sent; each value is the exact string transmitted (strings
               verbatim, booleans true/false, numbers decimal, objects/arrays compact JSON)
  requestDate = "EEE, d MMM yyyy HH:mm:ss z" with English names, e.g. "Mon, 2 Jan 2023 15:04:05 GMT"
  Hmac       = base64(HMAC-SHA1(secretKey, contentMD5 + "\n" + requestDate + "\n" + servicePath))
  headers    accessKey, contentMD5, requestDate, Hmac, platform: 3

Transport: GET → every business parameter is one HTTP header named like the parameter (JSON-typed
ones as compact JSON text); POST → a JSON object body (default) or an
application/x-www-form-urlencoded body (JSON-typed values as JSON text).

`python3 ctyun_client.py` runs the signing self-test (the V1–V4 vectors of dialects/ctyun/README.md).
"""
import base64
import hashlib
import hmac
import http.client
import json
import time
import urllib.parse

PATH_PREFIX = "/apiproxy/v3/queue/"

# Operation → (HTTP method, business parameters in the doc's table order). customInfo is last.
OPS = {
    "createQueue": ("POST", ["createQueueInfo", "customInfo"]),
    "queryQueue": ("GET", ["regionId", "includeDeadletter", "customInfo"]),
    "querySpecifyQueue": ("GET", ["regionId", "queueId", "includeDeadletter", "customInfo"]),
    "removeQueue": ("POST", ["regionId", "queueId", "customInfo"]),
    "createConsumeGroup": ("POST", ["regionId", "queueId", "groups", "customInfo"]),
    "querySpecifyQueueAllConsumerGroup": ("GET", ["regionId", "queueId", "includeDeadletter", "customInfo"]),
    "removeSpecifyConsumerGroup": ("POST", ["regionId", "queueId", "groups", "customInfo"]),
    "sendSpecifyQueueMessage": ("POST", ["regionId", "queueId", "messages", "customInfo"]),
    "consumptionMessage": ("GET", ["consumerQueueInfo", "customInfo"]),
    "confirmConsumedSpecifiedMessage": ("POST", ["regionId", "queueId", "consumerGroupId", "message", "customInfo"]),
    "queryQuota": ("GET", ["regionId", "customInfo"]),
    "consumeDeadlettersMessage": ("GET", ["consumedMessageInfo", "customInfo"]),
    "confirmConsumeDeadlettersMessage": ("POST", ["consumedMessageInfo", "customInfo"]),
    "consumeReset": ("POST", ["consumedMessageInfo", "customInfo"]),
}

JSON_TYPED = {"createQueueInfo", "groups", "messages", "message", "consumerQueueInfo", "consumedMessageInfo", "customInfo", "config"}

_WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_ZONES = {"GMT": 0, "UTC": 0, "CST": 8 * 3600}


class _Omit:
    def __repr__(self):
        return "OMIT"


OMIT = _Omit()  # pass as a parameter value / custom_info to leave it out


# ----------------------------------------------------------------------------- primitives


def compact_json(value):
    """Compact JSON text (no spaces), non-ASCII kept as UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def render_value(value):
    """The exact string a parameter value is transmitted (and hashed) as (see Signing above)."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return compact_json(value)


def content_md5(values):
    """base64(md5(utf8("\\n".join(values)))); an empty list hashes the empty string."""
    joined = "\n".join(values)
    return base64.b64encode(hashlib.md5(joined.encode("utf-8")).digest()).decode("ascii")


def hmac_signature(secret_key, content_md5_value, request_date, service_path):
    msg = content_md5_value + "\n" + request_date + "\n" + service_path
    digest = hmac.new(secret_key.encode("utf-8"), msg.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def http_date(epoch=None, zone="GMT"):
    """"EEE, d MMM yyyy HH:mm:ss z" (day not zero-padded, English names), locale independent.

    zone: "GMT"/"UTC" (UTC wall clock) or "CST" (China Standard Time, UTC+8 wall clock)."""
    if epoch is None:
        epoch = time.time()
    t = time.gmtime(int(epoch) + _ZONES[zone])
    return "%s, %d %s %d %02d:%02d:%02d %s" % (
        _WEEKDAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec, zone)


def custom_info(account_id=None, ctype=2, crm_biz_id=None, name="qgate-conformance"):
    """A customInfo object (vendor doc §3.2.3). type 2 + identity.accountId selects a sub-namespace."""
    ident = {"crmBizId": crm_biz_id if crm_biz_id is not None else "", "accountId": account_id if account_id is not None else ""}
    return {"name": name, "email": "conformance@example.com", "phone": "10000", "type": ctype, "identity": ident}


# ----------------------------------------------------------------------------- requests


class Prepared:
    """A fully built request (pure: no I/O), so the signing can be checked against vectors."""

    def __init__(self, method, path, headers, body, md5_values):
        self.method = method
        self.path = path
        self.headers = headers  # list of (name, str value), order kept
        self.body = body  # bytes or None
        self.md5_values = md5_values

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class Response:
    def __init__(self, status, reason, headers, raw, elapsed):
        self.status = status
        self.reason = reason
        self.headers = headers  # dict, lowercased names
        self.raw = raw
        self.elapsed = elapsed
        self.json_error = None
        try:
            self.json = json.loads(raw.decode("utf-8")) if raw else None
            if not raw:
                self.json_error = "empty body"
        except Exception as e:  # noqa: BLE001 - any decode problem is reported, not raised
            self.json = None
            self.json_error = "body is not JSON (%s): %r" % (e, raw[:200])

    def short(self, limit=400):
        body = self.raw.decode("utf-8", "replace")
        if len(body) > limit:
            body = body[:limit] + "…(%d bytes)" % len(self.raw)
        return "HTTP %d %s" % (self.status, body)

    def __repr__(self):
        return self.short()


class Client:
    """One access key acting in one namespace (custom_info=None → the key's own account)."""

    def __init__(self, base, access_key, secret_key, region="cn-snxy1", custom_info=None, timeout=90.0):
        if "://" not in base:
            base = "http://" + base
        u = urllib.parse.urlsplit(base)
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.custom_info = custom_info
        self.timeout = timeout

    def with_namespace(self, custom_info_obj):
        return Client("%s://%s:%d" % (self.scheme, self.host, self.port), self.access_key, self.secret_key,
                      self.region, custom_info_obj, self.timeout)

    def with_key(self, access_key, secret_key):
        return Client("%s://%s:%d" % (self.scheme, self.host, self.port), access_key, secret_key,
                      self.region, self.custom_info, self.timeout)

    # -- building

    def prepare(self, op, params=None, *, method=None, encoding="json", custom_info=None, date=None,
                path=None, md5_values=None, secret_key=None, extra_headers=None, omit_headers=(),
                customInfo_in_header=False):
        """Builds a signed request. params: {name: value} (OMIT or absent = not sent). The order
        of the doc's table is applied whatever the dict order; unknown names are appended.
        custom_info: None → the client's own (if any); OMIT → none; else an object or raw string.
        md5_values: override the list hashed into contentMD5 (default: the canonical list).
        """
        default_method, order = OPS.get(op, ("POST", []))
        method = method or default_method
        path = path or (PATH_PREFIX + op)
        params = dict(params or {})
        ci = self.custom_info if custom_info is None else custom_info
        if ci is not None and ci is not OMIT:
            params["customInfo"] = ci
        names = [n for n in order if n in params and params[n] is not OMIT]
        names += [n for n in params if n not in order and params[n] is not OMIT]
        rendered = [(n, render_value(params[n])) for n in names]
        values = [v for _, v in rendered] if md5_values is None else list(md5_values)
        cmd5 = content_md5(values)
        rdate = date if date is not None else http_date()
        sig = hmac_signature(secret_key if secret_key is not None else self.secret_key, cmd5, rdate, path)
        headers = [("accessKey", self.access_key), ("contentMD5", cmd5), ("requestDate", rdate), ("Hmac", sig), ("platform", "3")]
        body = None
        if method == "GET":
            headers += rendered
        else:
            body_items = rendered
            if customInfo_in_header:
                headers += [(n, v) for n, v in rendered if n == "customInfo"]
                body_items = [(n, v) for n, v in rendered if n != "customInfo"]
            if encoding == "json":
                members = []
                for n, v in body_items:
                    raw = params[n]
                    text = v if not isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)
                    members.append(json.dumps(n) + ":" + text)
                body = ("{" + ",".join(members) + "}").encode("utf-8")
                headers.append(("Content-Type", "application/json;charset=UTF-8"))
            elif encoding == "form":
                body = urllib.parse.urlencode(body_items).encode("ascii")
                headers.append(("Content-Type", "application/x-www-form-urlencoded"))
            else:
                raise ValueError("encoding must be json or form")
        lowered = {h.lower() for h in omit_headers}
        headers = [(k, v) for k, v in headers if k.lower() not in lowered]
        for k, v in (extra_headers or []):
            headers = [(hk, hv) for hk, hv in headers if hk.lower() != k.lower()]
            if v is not None:
                headers.append((k, v))
        return Prepared(method, path, headers, body, values)

    # -- sending

    def send_prepared(self, p):
        return self.raw(p.method, p.path, p.headers, p.body)

    def raw(self, method, path, headers=(), body=None):
        conn_cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(self.host, self.port, timeout=self.timeout)
        start = time.monotonic()
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in headers:
                conn.putheader(k, v.encode("utf-8") if isinstance(v, str) else v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            data = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            return Response(r.status, r.reason, hdrs, data, time.monotonic() - start)
        finally:
            conn.close()

    def call(self, op, params=None, **kw):
        return self.send_prepared(self.prepare(op, params, **kw))

    # -- the 14 operations (thin wrappers; every keyword goes to prepare())

    def create_queue(self, name, mode="NORMAL", description=None, redrive=None, max_consume=None, mode_key="queueMode", extra=None, **kw):
        info = {"regionId": self.region, "name": name}
        if mode is not None:
            info[mode_key] = mode
        if description is not None:
            info["description"] = description
        if redrive is not None:
            info["redrivePolicy"] = redrive
        if max_consume is not None:
            info["maxConsumeCount"] = max_consume
        info.update(extra or {})
        return self.call("createQueue", {"createQueueInfo": info}, **kw)

    def query_queue(self, include_dl=None, region=None, **kw):
        p = {"regionId": region or self.region}
        if include_dl is not None:
            p["includeDeadletter"] = include_dl
        return self.call("queryQueue", p, **kw)

    def query_specify_queue(self, queue_id, include_dl=None, region=None, **kw):
        p = {"regionId": region or self.region, "queueId": queue_id}
        if include_dl is not None:
            p["includeDeadletter"] = include_dl
        return self.call("querySpecifyQueue", p, **kw)

    def remove_queue(self, queue_id, **kw):
        return self.call("removeQueue", {"regionId": self.region, "queueId": queue_id}, **kw)

    def create_groups(self, queue_id, groups, **kw):
        return self.call("createConsumeGroup", {"regionId": self.region, "queueId": queue_id, "groups": groups}, **kw)

    def query_groups(self, queue_id, include_dl=None, **kw):
        p = {"regionId": self.region, "queueId": queue_id}
        if include_dl is not None:
            p["includeDeadletter"] = include_dl
        return self.call("querySpecifyQueueAllConsumerGroup", p, **kw)

    def remove_groups(self, queue_id, groups, **kw):
        return self.call("removeSpecifyConsumerGroup", {"regionId": self.region, "queueId": queue_id, "groups": groups}, **kw)

    def send(self, queue_id, messages, **kw):
        return self.call("sendSpecifyQueueMessage", {"regionId": self.region, "queueId": queue_id, "messages": messages}, **kw)

    def consume(self, group_id, queue_id=None, max_msgs="10", tags=None, tag_type=None, time_wait="1", ack_wait=None, extra=None, **kw):
        info = {"regionId": self.region}
        if queue_id is not None:
            info["queueId"] = queue_id
        info["consumerGroupId"] = group_id
        if max_msgs is not None:
            info["maxMsgs"] = max_msgs
        if tag_type is not None:
            info["tagType"] = tag_type
        if tags is not None:
            info["tags"] = tags
        if time_wait is not None:
            info["timeWait"] = time_wait
        if ack_wait is not None:
            info["ackWait"] = ack_wait
        info.update(extra or {})
        return self.call("consumptionMessage", {"consumerQueueInfo": info}, **kw)

    def confirm(self, queue_id, group_id, entries, **kw):
        return self.call("confirmConsumedSpecifiedMessage",
                         {"regionId": self.region, "queueId": queue_id, "consumerGroupId": group_id, "message": entries}, **kw)

    def query_quota(self, region=None, **kw):
        return self.call("queryQuota", {"regionId": region or self.region}, **kw)

    def consume_dl(self, group_id, queue_id=None, max_msgs="10", time_wait="1", ack_wait=None, **kw):
        info = {"regionId": self.region}
        if queue_id is not None:
            info["queueId"] = queue_id
        info["consumerGroupId"] = group_id
        if max_msgs is not None:
            info["maxMsgs"] = max_msgs
        if time_wait is not None:
            info["timeWait"] = time_wait
        if ack_wait is not None:
            info["ackWait"] = ack_wait
        return self.call("consumeDeadlettersMessage", {"consumedMessageInfo": info}, **kw)

    def confirm_dl(self, group_id, queue_id, entries, wrap=True, **kw):
        info = {"regionId": self.region}
        if queue_id is not None:
            info["queueId"] = queue_id
        info["consumerGroupId"] = group_id
        info["message"] = {"message": entries} if wrap else entries
        return self.call("confirmConsumeDeadlettersMessage", {"consumedMessageInfo": info}, **kw)

    def reset(self, group_id, queue_id, timestamp, force=None, **kw):
        config = {"timestamp": timestamp}
        if force is not None:
            config["force"] = force
        info = {"regionId": self.region}
        if queue_id is not None:
            info["queueId"] = queue_id
        info["consumerGroupId"] = group_id
        info["config"] = config
        return self.call("consumeReset", {"consumedMessageInfo": info}, **kw)


# ----------------------------------------------------------------------------- response helpers


def parse_inner(value):
    """Parses an inner returnObj that the envelope carries as a JSON *string*."""
    if not isinstance(value, str):
        raise ValueError("inner returnObj is %s, expected a JSON string" % type(value).__name__)
    return json.loads(value)


def decode_handler(handler):
    """A handler is standard base64 (padded) of compact JSON (dialects/ctyun/README.md)."""
    return json.loads(base64.b64decode(handler.encode("ascii"), validate=True).decode("utf-8"))


# ----------------------------------------------------------------------------- self-test


SELFTEST_SK = "qgate-demo-sk-0123456789abcdef"
SELFTEST_AK = "qgate-demo-ak"


def self_test():
    """Reproduces the V1–V4 signing vectors through the client's own request builder.
    Returns [(name, ok, detail)]."""
    c = Client("http://127.0.0.1:1", SELFTEST_AK, SELFTEST_SK)
    out = []

    def chk(name, got, want):
        out.append((name, got == want, "got %r, want %r" % (got, want)))

    # V1
    p = c.prepare("querySpecifyQueue", {"regionId": "cn-snxy1", "queueId": "e99f9718-a61f-4946-a259-5c84ba613e92", "includeDeadletter": True},
                  date="Mon, 2 Jan 2023 15:04:05 GMT")
    chk("signing V1 md5 input", "\n".join(p.md5_values), "cn-snxy1\ne99f9718-a61f-4946-a259-5c84ba613e92\ntrue")
    chk("signing V1 contentMD5", p.header("contentMD5"), "Xb+f+baWCLjXRI4G2ZtJew==")
    chk("signing V1 Hmac", p.header("Hmac"), "idsvOQKFdzlyWp0wUAG57ny2m6k=")
    chk("signing V1 params sent as headers", [p.header("regionId"), p.header("includeDeadletter"), p.body], ["cn-snxy1", "true", None])
    chk("signing V1 requestDate format", http_date(1672671845), "Mon, 2 Jan 2023 15:04:05 GMT")
    chk("signing V1 CST requestDate format", http_date(1672671845, "CST"), "Mon, 2 Jan 2023 23:04:05 CST")
    p = c.prepare("querySpecifyQueue", {"regionId": "cn-snxy1", "queueId": "e99f9718-a61f-4946-a259-5c84ba613e92", "includeDeadletter": "true"},
                  date=http_date(1672671845, "CST"))
    chk("signing V1 CST Hmac", p.header("Hmac"), "ccL4OXN1wsNfdJimEfelA7tWdJI=")
    # V2
    info = {"regionId": "cn-snxy1", "name": "orders", "queueMode": "FIFO", "description": "demo", "redrivePolicy": "enable", "maxConsumeCount": "3"}
    p = c.prepare("createQueue", {"createQueueInfo": info}, date="Tue, 5 Mar 2024 08:00:00 GMT")
    chk("signing V2 JSON body", p.body.decode("utf-8"),
        '{"createQueueInfo":{"regionId":"cn-snxy1","name":"orders","queueMode":"FIFO","description":"demo","redrivePolicy":"enable","maxConsumeCount":"3"}}')
    chk("signing V2 contentMD5", p.header("contentMD5"), "9NfmNzg26z1WoaywUmDCgw==")
    chk("signing V2 Hmac", p.header("Hmac"), "pvyEwmDh2CIWIxIIIhjCho90HOE=")
    # V3
    p = c.prepare("queryQuota", {}, date="Tue, 5 Mar 2024 08:00:00 GMT")
    chk("signing V3 contentMD5", p.header("contentMD5"), "1B2M2Y8AsgTpgAmY7PhCfg==")
    chk("signing V3 Hmac", p.header("Hmac"), "PgrcbD9g9YSkS5PnfA8EiLKDb/A=")
    # V4
    cqi = {"regionId": "cn-snxy1", "queueId": "7b23784b-d744-46ff-99a0-f2662d0dc430", "consumerGroupId": "g-df1be57d-65d3-4d89-911e-404fa864dca5",
           "maxMsgs": "5", "tagType": "or", "tags": ["red"], "timeWait": "1", "ackWait": "30"}
    ci = {"name": "demo", "email": "demo@example.com", "phone": "10000", "type": 2, "identity": {"crmBizId": "", "accountId": "tenant-42"}}
    p = c.prepare("consumptionMessage", {"consumerQueueInfo": cqi}, custom_info=ci, date="Tue, 5 Mar 2024 08:00:00 GMT")
    chk("signing V4 consumerQueueInfo header", p.header("consumerQueueInfo"),
        '{"regionId":"cn-snxy1","queueId":"7b23784b-d744-46ff-99a0-f2662d0dc430","consumerGroupId":"g-df1be57d-65d3-4d89-911e-404fa864dca5","maxMsgs":"5","tagType":"or","tags":["red"],"timeWait":"1","ackWait":"30"}')
    chk("signing V4 contentMD5", p.header("contentMD5"), "SiDRxS9EifuhUsr5Jl4+ag==")
    chk("signing V4 Hmac", p.header("Hmac"), "4sQvTyEAp7PqoI7uecpWq9vCiWM=")
    p = c.prepare("consumptionMessage", {"consumerQueueInfo": cqi}, custom_info=OMIT, date="Tue, 5 Mar 2024 08:00:00 GMT")
    chk("signing V4 contentMD5 without customInfo", p.header("contentMD5"), "gOlcj6Rn/Mqu2P+QUY6oOA==")
    return out


if __name__ == "__main__":
    import sys
    bad = 0
    for name, ok, detail in self_test():
        print(("PASS " + name) if ok else ("FAIL %s: %s" % (name, detail)))
        bad += not ok
    sys.exit(1 if bad else 0)
