#!/usr/bin/env python3
"""Recomputes the six vectors of fixtures/dms/sig-vectors.json with the official SDK's own pipeline.

Each vector is produced by a real `DmsClient` call (or, for the v1.0 one, the client's generic
`call_api`, which is how the SDK issues any request), with the clock frozen by presetting
`X-Sdk-Date` (the SDK signer uses a preset date as-is) and `HttpConfig.user_agent = "qgate-vector"`.
Nothing goes on the network: a requests transport adapter mounted on the SDK's own session
captures the prepared request. The signer's canonical request and string to sign are captured by
wrapping its methods. For every vector this compares: method, request target, the five signed
headers, Authorization, body bytes, body SHA-256, canonical request and string to sign.

Usage: python sig_vectors_check.py [path/to/sig-vectors.json]   (default: the repository's fixture)
Output: `PASS <vector>` / `FAIL <vector>: <what differs>`; exit 1 if any differ.
"""
import hashlib
import json
import os
import sys

import requests
from requests.adapters import BaseAdapter

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.signer import signer as signer_mod
from huaweicloudsdkdms.v2 import (
    ConsumeMessagesRequest,
    DeleteQueueRequest,
    DmsClient,
    ListQueuesRequest,
    SendMessageEntity,
    SendMessagesReq,
    SendMessagesRequest,
)

DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fixtures", "dms",
                       "sig-vectors.json")
PATH = sys.argv[1] if len(sys.argv) > 1 else DEFAULT

captured = {}


class CaptureAdapter(BaseAdapter):
    """Records the prepared request and answers 200 `[]` without touching the network."""

    def send(self, request, **kwargs):
        captured["prepared"] = request
        resp = requests.Response()
        resp.status_code = 200
        resp._content = b"[]"
        resp.headers["Content-Type"] = "application/json"
        resp.request = request
        resp.url = request.url
        return resp

    def close(self):
        pass


_orig_canon = signer_mod.Signer._process_canonical_request
_orig_sts = signer_mod.Signer._process_string_to_sign


def _canon(self, request, signed_headers):
    out = _orig_canon(self, request, signed_headers)
    captured["canonical_request"] = out
    return out


def _sts(self, canonical_request, t):
    out = _orig_sts(self, canonical_request, t)
    captured["string_to_sign"] = out
    return out


signer_mod.Signer._process_canonical_request = _canon
signer_mod.Signer._process_string_to_sign = _sts


def client_for(v):
    cfg = HttpConfig.get_default_config()
    cfg.user_agent = "qgate-vector"
    c = (DmsClient.new_builder()
         .with_http_config(cfg)
         .with_credentials(BasicCredentials(v["ak"], v["sk"], "0123456789abcdef0123456789abcdef"))
         .with_endpoint("http://127.0.0.1:8080")
         .build())
    c.preset_headers["X-Sdk-Date"] = v["headers"]["X-Sdk-Date"]
    c.get_http_client()._session.mount("http://", CaptureAdapter())
    return c


QID = "9bf46390-38a2-462d-b392-4d5b2d519c55"
GID = "g-5ec247fd-d4a2-4d4f-9876-e4ff3280c461"


def drive(name, c):
    if name == "list_queues_include_deadletter":
        c.list_queues(ListQueuesRequest(include_deadletter=True))
    elif name == "send_messages":
        c.send_messages(SendMessagesRequest(queue_id=QID, body=SendMessagesReq(
            return_id=True, messages=[SendMessageEntity(body={"foo": "bar"}, attributes={"k": "v"}, tags=["t1"])])))
    elif name == "consume_with_two_tags":
        c.consume_messages(ConsumeMessagesRequest(queue_id=QID, consumer_group_id=GID, max_msgs=10, time_wait=3,
                                                  ack_wait=30, tag=["tag2", "tag1"], tag_type="and"))
    elif name == "delete_queue":
        c.delete_queue(DeleteQueueRequest(queue_id=QID))
    elif name == "edge_encoded_path_and_unicode_query":
        c.consume_messages(ConsumeMessagesRequest(queue_id="a b/c", consumer_group_id="g~1",
                                                  tag=["\u00fc&x=1", "a/c", "z b"]))
    elif name == "v1_ack_unicode_body":
        c.call_api(resource_path="/v1.0/{project_id}/queues/{queue_id}/groups/{consumer_group_id}/ack",
                   method="POST", path_params={"queue_id": QID, "consumer_group_id": GID}, query_params=[],
                   header_params={"Content-Type": "application/json"},
                   body={"message": [{"handler": "aGFuZGxlcg==", "status": "success"}], "note": "\u6d88\u606f"},
                   post_params={}, response_type="ConfirmConsumptionMessagesResponse", response_headers=[],
                   auth_settings=["apig-auth-iam"], collection_formats={},
                   request_type="ConfirmConsumptionMessagesRequest")
    else:
        raise KeyError("no SDK call known for vector " + name)


def main():
    with open(PATH, encoding="utf-8") as f:
        vectors = json.load(f)
    bad = 0
    for v in vectors:
        name = v["name"]
        captured.clear()
        diffs = []
        try:
            drive(name, client_for(v))
            p = captured["prepared"]
            body = p.body or b""
            if isinstance(body, str):
                body = body.encode("utf-8")
            got = {
                "method": p.method,
                "request_target": p.path_url,
                "body_utf8": body.decode("utf-8"),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "canonical_request": captured.get("canonical_request"),
                "string_to_sign": captured.get("string_to_sign"),
                "authorization": p.headers.get("Authorization"),
            }
            for k, want in got.items():
                if v[k] != want:
                    diffs.append("%s: vector %r, SDK %r" % (k, v[k], want))
            for h, want in v["headers"].items():
                sent = p.headers.get(h)
                if isinstance(sent, bytes):
                    sent = sent.decode("utf-8")
                elif isinstance(sent, str):
                    sent = sent.encode("iso-8859-1").decode("utf-8")
                if sent != want:
                    diffs.append("header %s: vector %r, SDK %r" % (h, want, sent))
        except Exception as e:  # noqa: BLE001
            diffs.append("%s: %s" % (type(e).__name__, e))
        if diffs:
            bad += 1
            print("FAIL %s: %s" % (name, "; ".join(diffs)))
        else:
            print("PASS %s" % name)
    print("%d/%d vectors match the SDK (huaweicloudsdkcore signer)" % (len(vectors) - bad, len(vectors)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
