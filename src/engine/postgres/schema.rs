//! The PostgreSQL engine's schema and its versioned migrations.
//!
//! The tables (every name starts with `qg_`, so a database can hold other things too):
//!
//! * `qg_queue` — the directory: one row per queue with its configuration (serde JSON as
//!   bytes: configurations may hold any character, and `jsonb` refuses NUL), the columns SQL
//!   filters on (region, retention) and a `version` bumped on every change (nodes cache parsed
//!   configurations by it); `keyed` once any message had an ordering key (its claims take the
//!   queue lock).
//! * `qg_group` — consumer groups, the default group (number 0) included, with the tag rule
//!   (`NULL` until a first consume fixes it) and the reset floor.
//! * `qg_message` — messages, immutable after insert, bodies included; `seq` comes from one
//!   sequence for every queue (gaps are fine; order is publish order).
//! * `qg_lane` — one narrow row per (group, message) the group still has to do, or has
//!   acknowledged in a log-mode queue: ready, leased (with the lease id and end), delayed, acked,
//!   dying (to be dead-lettered).
//!   Leases and acks rewrite only this row, never the message. No row: done for that group.
//! * `qg_dead` — each group's own dead-letter store.
//! * `qg_idem` — idempotency records; `qg_subscription` — push subscriptions; `qg_owner` —
//!   which node runs each background job (push workers), until when;
//!   `qg_schema` — the schema version.
//!
//! Identifiers and strings that may hold NUL (internal namespaces do) are escaped
//! (see [`super::esc`]).

/// The migrations, in order; the schema version is how many have run.
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
CREATE SEQUENCE qg_seq;
CREATE SEQUENCE qg_lease;
CREATE TABLE qg_queue (
    id uuid PRIMARY KEY,
    ns text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    config bytea NOT NULL,
    region text,
    retention_ms bigint NOT NULL,
    created_at bigint NOT NULL,
    modified_at bigint NOT NULL,
    version bigint NOT NULL DEFAULT 1,
    keyed boolean NOT NULL DEFAULT false,
    UNIQUE (ns, name)
);
CREATE TABLE qg_group (
    queue_id uuid NOT NULL,
    no integer NOT NULL,
    ext_id text NOT NULL,
    name text COLLATE "C" NOT NULL,
    rule_tags text[],
    rule_and boolean NOT NULL DEFAULT false,
    created_at bigint NOT NULL,
    reset_floor bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue_id, no)
);
CREATE TABLE qg_message (
    queue_id uuid NOT NULL,
    seq bigint NOT NULL,
    id uuid NOT NULL,
    kind smallint NOT NULL,
    priority smallint NOT NULL,
    enqueued_at bigint NOT NULL,
    not_before bigint NOT NULL,
    size integer NOT NULL,
    tags text[] NOT NULL,
    okey text,
    origin bytea,
    origin_queue uuid,
    attrs bytea NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (queue_id, seq)
);
CREATE INDEX qg_message_id ON qg_message (queue_id, id);
CREATE INDEX qg_message_age ON qg_message (queue_id, enqueued_at);
CREATE INDEX qg_message_delayed ON qg_message (queue_id, not_before);
CREATE INDEX qg_message_origin ON qg_message (origin_queue) WHERE origin_queue IS NOT NULL;
CREATE TABLE qg_lane (
    queue_id uuid NOT NULL,
    grp integer NOT NULL,
    seq bigint NOT NULL,
    state smallint NOT NULL,
    pkey smallint NOT NULL,
    visible_at bigint NOT NULL DEFAULT 0,
    lease bigint NOT NULL DEFAULT 0,
    deliveries integer NOT NULL DEFAULT 0,
    failures integer NOT NULL DEFAULT 0,
    first_at bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue_id, seq, grp)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
CREATE INDEX qg_lane_ready ON qg_lane (queue_id, grp, pkey, seq) WHERE state = 0;
CREATE INDEX qg_lane_busy ON qg_lane (queue_id, grp, seq) WHERE state IN (1, 2);
CREATE INDEX qg_lane_due ON qg_lane (queue_id, visible_at) WHERE state IN (1, 2);
CREATE INDEX qg_lane_timer ON qg_lane (visible_at) WHERE state IN (1, 2);
CREATE INDEX qg_lane_dying ON qg_lane (queue_id) WHERE state = 4;
CREATE TABLE qg_dead (
    queue_id uuid NOT NULL,
    grp integer NOT NULL,
    seq bigint NOT NULL,
    died_at bigint NOT NULL,
    reason smallint NOT NULL,
    state smallint NOT NULL,
    until bigint NOT NULL DEFAULT 0,
    lease bigint NOT NULL DEFAULT 0,
    deliveries integer NOT NULL DEFAULT 0,
    failures integer NOT NULL DEFAULT 0,
    first_at bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue_id, seq, grp)
);
CREATE INDEX qg_dead_group ON qg_dead (queue_id, grp, seq);
CREATE INDEX qg_dead_due ON qg_dead (until) WHERE state = 1;
CREATE TABLE qg_idem (
    ns text NOT NULL,
    cap text NOT NULL,
    key text NOT NULL,
    fingerprint bytea NOT NULL,
    status integer NOT NULL,
    body bytea NOT NULL,
    created_at bigint NOT NULL,
    owner uuid,
    PRIMARY KEY (ns, cap, key)
);
CREATE INDEX qg_idem_age ON qg_idem (created_at);
CREATE TABLE qg_subscription (
    id uuid PRIMARY KEY,
    queue_id uuid NOT NULL,
    created_at bigint NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX qg_subscription_queue ON qg_subscription (queue_id);
CREATE TABLE qg_owner (
    key text PRIMARY KEY,
    node uuid NOT NULL,
    until bigint NOT NULL
);
"#,
];

/// Lane states.
pub const READY: i16 = 0;
pub const LEASED: i16 = 1;
pub const DELAYED: i16 = 2;
pub const ACKED: i16 = 3;
/// A lease that ended at the failure limit (or a nack without requeue): never claimed again,
/// dead-lettered by the transaction that noticed, or by the next refresh if that one died.
pub const DYING: i16 = 4;

/// Own dead-letter states.
pub const DEAD_READY: i16 = 0;
pub const DEAD_LEASED: i16 = 1;
pub const DEAD_ACKED: i16 = 2;

/// The advisory lock that serialises migrations across nodes starting together.
pub const MIGRATION_LOCK: i64 = 0x7167_6174_655f_6d69; // "qgate_mi"

/// Brings the schema up to date; refuses a schema newer than this build knows.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), String> {
    let db = |e: tokio_postgres::Error| format!("migrating the schema: {e}");
    client.batch_execute("CREATE TABLE IF NOT EXISTS qg_schema (version integer NOT NULL)").await.map_err(db)?;
    let tx = client.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(db)?;
    let row = tx.query_opt("SELECT version FROM qg_schema", &[]).await.map_err(db)?;
    let current = match row {
        Some(r) => r.get::<_, i32>(0) as usize,
        None => {
            tx.execute("INSERT INTO qg_schema (version) VALUES (0)", &[]).await.map_err(db)?;
            0
        }
    };
    if current > MIGRATIONS.len() {
        return Err(format!(
            "the database schema is version {current}, newer than this qgate knows ({}): upgrade qgate",
            MIGRATIONS.len()
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.batch_execute(sql).await.map_err(|e| format!("schema migration {}: {e}", i + 1))?;
        tx.execute("UPDATE qg_schema SET version = $1", &[&((i + 1) as i32)]).await.map_err(db)?;
        tracing::info!(version = i + 1, "database schema migrated");
    }
    tx.commit().await.map_err(db)
}
