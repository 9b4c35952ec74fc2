//! The PostgreSQL a test uses: `QGATE_TEST_PG` (a URL; `scripts/with-postgres` starts a
//! throwaway server and sets it, and the test command runs every test through it). A test that
//! needs PostgreSQL fails with this explanation when it is not set — it never skips.

use tokio_postgres::NoTls;

/// The server's URL.
pub fn url() -> String {
    std::env::var("QGATE_TEST_PG").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        panic!(
            "QGATE_TEST_PG is not set: run the tests through scripts/with-postgres (scripts/test does), \
             or set it to a PostgreSQL URL the tests may create schemas in"
        )
    })
}

/// `url` with a search path: the engine's tables go into that schema.
pub fn with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

/// A new, empty schema; returns the URL whose connections use it.
pub async fn fresh_schema() -> String {
    let base = url();
    let (client, conn) = tokio_postgres::connect(&base, NoTls).await.expect("connect to QGATE_TEST_PG");
    let task = tokio::spawn(conn);
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.expect("create a schema");
    drop(client);
    let _ = task.await;
    with_schema(&base, &schema)
}
