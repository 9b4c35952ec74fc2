//! Setting up and tearing down the queues (and the fan-out topic) a workload runs on.

use serde_json::{Value, json};

use super::super::conn::Conn;
use super::{Creds, GROUP, Kind, REGION, Target};

impl Target {
    /// A target for queue `name`, its id and group not known (all infrai and MNS need).
    pub fn named(kind: Kind, host: &str, creds: &Creds, name: &str) -> Target {
        Target {
            kind,
            host: host.into(),
            creds: creds.clone(),
            name: name.into(),
            id: String::new(),
            group: String::new(),
            topic_queues: 0,
        }
    }

    /// Creates the workload's queue (and consumer group).
    pub async fn setup(conn: &mut Conn, kind: Kind, host: &str, creds: &Creds, name: &str) -> Result<Target, String> {
        let mut t = Target::named(kind, host, creds, name);
        match kind {
            Kind::Infrai => {
                let a = conn.call(t.infrai("POST", "/v1/queue/create", json!({"name": name}))).await?;
                if a.status != 201 {
                    return Err(fail("create queue", &a));
                }
            }
            Kind::Mns => {
                let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Queue xmlns=\"http://mns.aliyuncs.com/doc/v1/\"><VisibilityTimeout>60</VisibilityTimeout></Queue>".to_string();
                let a = conn.call(t.mns("PUT", &format!("/queues/{name}"), Some(doc))).await?;
                if a.status != 201 {
                    return Err(fail("create queue", &a));
                }
            }
            Kind::Ctyun => {
                let a = conn
                    .call(t.ctyun("createQueue", &[("createQueueInfo", json!({"regionId": REGION, "name": name}))]))
                    .await?;
                let v: Value = serde_json::from_slice(&a.body).map_err(|_| fail("create queue", &a))?;
                let inner: Value =
                    serde_json::from_str(v["returnObj"].as_str().ok_or_else(|| fail("create queue", &a))?)
                        .map_err(|_| fail("create queue", &a))?;
                t.id = inner["id"].as_str().unwrap_or("").to_string();
                t.group = t.create_group(conn).await?;
            }
            Kind::Dms => {
                let a = conn.call(t.dms("POST", "/queues", &[], Some(json!({"name": name})))).await?;
                let v: Value = serde_json::from_slice(&a.body).map_err(|_| fail("create queue", &a))?;
                t.id = v["id"].as_str().ok_or_else(|| fail("create queue", &a))?.to_string();
                t.group = t.create_group(conn).await?;
            }
        }
        Ok(t)
    }

    /// MNS fan-out: a topic `name` with `n` queue subscriptions (SIMPLIFIED, so each queue gets
    /// the body as published).
    pub async fn setup_fanout(
        conn: &mut Conn,
        host: &str,
        creds: &Creds,
        name: &str,
        n: usize,
    ) -> Result<Target, String> {
        let mut t = Target::named(Kind::Mns, host, creds, name);
        let topic =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Topic xmlns=\"http://mns.aliyuncs.com/doc/v1/\"/>".to_string();
        let a = conn.call(t.mns("PUT", &format!("/topics/{name}"), Some(topic))).await?;
        if a.status != 201 {
            return Err(fail("create topic", &a));
        }
        t.topic_queues = n;
        for i in 0..n {
            let q = Target::setup(conn, Kind::Mns, host, creds, &format!("{name}-{i}")).await?;
            let sub = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Subscription xmlns=\"http://mns.aliyuncs.com/doc/v1/\"><Endpoint>acs:mns:bench:1:queues/{}</Endpoint><NotifyContentFormat>SIMPLIFIED</NotifyContentFormat></Subscription>",
                q.name
            );
            let a = conn.call(t.mns("PUT", &format!("/topics/{name}/subscriptions/s{i}"), Some(sub))).await?;
            if a.status != 201 {
                return Err(fail("subscribe", &a));
            }
        }
        Ok(t)
    }

    /// Creates the bench's consumer group on the (id-addressed) queue `self.id`; its id.
    async fn create_group(&self, conn: &mut Conn) -> Result<String, String> {
        let fail = |a: &super::super::conn::Answer| fail("create group", a);
        match self.kind {
            Kind::Ctyun => {
                let a = conn
                    .call(self.ctyun(
                        "createConsumeGroup",
                        &[
                            ("regionId", json!(REGION)),
                            ("queueId", json!(self.id)),
                            ("groups", json!([{"name": GROUP}])),
                        ],
                    ))
                    .await?;
                let v: Value = serde_json::from_slice(&a.body).map_err(|_| fail(&a))?;
                Ok(v["consumerGroupId"].as_str().ok_or_else(|| fail(&a))?.to_string())
            }
            Kind::Dms => {
                let a = conn
                    .call(self.dms(
                        "POST",
                        &format!("/queues/{}/groups", self.id),
                        &[],
                        Some(json!({"groups": [{"name": GROUP}]})),
                    ))
                    .await?;
                let v: Value = serde_json::from_slice(&a.body).map_err(|_| fail(&a))?;
                Ok(v["groups"][0]["id"].as_str().ok_or_else(|| fail(&a))?.to_string())
            }
            Kind::Infrai | Kind::Mns => Ok(String::new()),
        }
    }

    /// Finds the existing queue `name` and the bench's consumer group on it, creating the group
    /// when the queue has none of that name (as [`Target::setup`] does). CTYun and DMS address
    /// queues by id and consume through a group, so both are looked up; infrai and MNS address
    /// queues by name, so their target is built without asking the server.
    pub async fn lookup(conn: &mut Conn, kind: Kind, host: &str, creds: &Creds, name: &str) -> Result<Target, String> {
        let mut t = Target::named(kind, host, creds, name);
        // The id of the entry of `list` called `name`.
        let id_of = |list: &Value, name: &str| -> Option<String> {
            list.as_array()?.iter().find(|e| e["name"] == name).and_then(|e| e["id"].as_str()).map(str::to_string)
        };
        let groups = match kind {
            Kind::Infrai | Kind::Mns => return Ok(t),
            Kind::Ctyun => {
                // Envelope D: the payload under `returnObj` (and mirrored at the top level).
                let payload = |what: &str, a: &super::super::conn::Answer| -> Result<Value, String> {
                    let mut v: Value = serde_json::from_slice(&a.body).map_err(|_| fail(what, a))?;
                    if v["statusCode"] != 800 {
                        return Err(fail(what, a));
                    }
                    Ok(v["returnObj"].take())
                };
                let a = conn.call(t.ctyun("queryQueue", &[("regionId", json!(REGION))])).await?;
                let v = payload("list queues", &a)?;
                let Some(id) = id_of(&v["queues"], name) else {
                    return Err(format!("queue {name} not found"));
                };
                t.id = id;
                let a = conn
                    .call(t.ctyun(
                        "querySpecifyQueueAllConsumerGroup",
                        &[("regionId", json!(REGION)), ("queueId", json!(t.id))],
                    ))
                    .await?;
                payload("list groups", &a)?
            }
            Kind::Dms => {
                let a = conn.call(t.dms("GET", "/queues", &[], None)).await?;
                if a.status != 200 {
                    return Err(fail("list queues", &a));
                }
                let v: Value = serde_json::from_slice(&a.body).map_err(|_| fail("list queues", &a))?;
                let Some(id) = id_of(&v["queues"], name) else {
                    return Err(format!("queue {name} not found"));
                };
                t.id = id;
                let a = conn.call(t.dms("GET", &format!("/queues/{}/groups", t.id), &[], None)).await?;
                if a.status != 200 {
                    return Err(fail("list groups", &a));
                }
                serde_json::from_slice::<Value>(&a.body).map_err(|_| fail("list groups", &a))?
            }
        };
        t.group = match id_of(&groups["groups"], GROUP) {
            Some(g) => g,
            None => t.create_group(conn).await?,
        };
        Ok(t)
    }

    /// Deletes the workload's queue.
    pub async fn teardown(&self, conn: &mut Conn) -> Result<(), String> {
        if self.topic_queues > 0 {
            for i in 0..self.topic_queues {
                let a = conn.call(self.mns("DELETE", &format!("/queues/{}-{i}", self.name), None)).await?;
                if !a.status.is_success() {
                    return Err(format!("delete queue: {}", a.status));
                }
            }
            let a = conn.call(self.mns("DELETE", &format!("/topics/{}", self.name), None)).await?;
            return if a.status.is_success() { Ok(()) } else { Err(format!("delete topic: {}", a.status)) };
        }
        let req = match self.kind {
            Kind::Infrai => self.infrai("DELETE", &format!("/v1/queue/delete/{}", self.name), json!({})),
            Kind::Mns => self.mns("DELETE", &format!("/queues/{}", self.name), None),
            Kind::Ctyun => self.ctyun("removeQueue", &[("regionId", json!(REGION)), ("queueId", json!(self.id))]),
            Kind::Dms => self.dms("DELETE", &format!("/queues/{}", self.id), &[], None),
        };
        let a = conn.call(req).await?;
        if a.status.is_success() { Ok(()) } else { Err(format!("delete queue: {}", a.status)) }
    }
}

/// A setup call's unexpected answer, as an error.
pub(super) fn fail(what: &str, a: &super::super::conn::Answer) -> String {
    format!("{what}: {} {}", a.status, String::from_utf8_lossy(&a.body))
}
