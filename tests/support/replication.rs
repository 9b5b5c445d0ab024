//! What a test asks a Redis about its replication, through `INFO`.

use std::time::Duration;

use super::{eventually, RedisProcess, REDIS_ANSWER_TIMEOUT};

/// One field of `INFO <section>`; `None` if the Redis does not answer within
/// [`REDIS_ANSWER_TIMEOUT`].
pub fn info_field(r: &RedisProcess, section: &str, field: &str) -> Option<String> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/", r.port))
        .ok()?
        .get_connection_with_timeout(REDIS_ANSWER_TIMEOUT)
        .ok()?;
    let _ = c.set_read_timeout(Some(REDIS_ANSWER_TIMEOUT));
    let text: String = redis::cmd("INFO").arg(section).query(&mut c).ok()?;
    text.lines()
        .filter_map(|l| l.trim_end().split_once(':'))
        .find(|(k, _)| *k == field)
        .map(|(_, v)| v.to_string())
}

/// The replication offset: `master_repl_offset` of a master, `slave_repl_offset` of a replica.
pub fn offset(r: &RedisProcess) -> Option<i64> {
    let field = match r.role()?.as_str() {
        "master" => "master_repl_offset",
        _ => "slave_repl_offset",
    };
    info_field(r, "replication", field)?.parse().ok()
}

/// Whether `r` replicates from `master` with the link up.
pub fn follows(r: &RedisProcess, master: &RedisProcess) -> bool {
    r.role().as_deref() == Some("slave")
        && info_field(r, "replication", "master_port").as_deref() == Some(&master.port.to_string())
        && info_field(r, "replication", "master_link_status").as_deref() == Some("up")
}

/// Waits (up to 15 s) until every replica follows `master` at the master's offset.
pub async fn wait_synced(master: &RedisProcess, replicas: &[&RedisProcess]) {
    eventually(
        Duration::from_secs(15),
        "replicas in sync with the master",
        || async {
            let m = offset(master)?;
            replicas
                .iter()
                .all(|r| follows(r, master) && offset(r) == Some(m))
                .then_some(())
        },
    )
    .await
}
