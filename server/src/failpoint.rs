//! Test pauses at named points of multi-step operations, so integration tests can kill a
//! process inside a window that is otherwise a few milliseconds wide (the way `fail` points
//! are used, without a separate build). Set with `KILN_TEST_PAUSE=<point>=<ms>[,<point>=<ms>…]`;
//! without it a point costs one map lookup.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

/// After the source handed a live-migrated VM over, before the new owner is recorded.
pub const MIGRATE_HANDED_OVER: &str = "migrate.handed_over";
/// After the new owner of a live-migrated VM is recorded, before the target is committed.
pub const MIGRATE_RECORDED: &str = "migrate.recorded";

fn pauses() -> &'static HashMap<String, Duration> {
    static PAUSES: OnceLock<HashMap<String, Duration>> = OnceLock::new();
    PAUSES.get_or_init(|| {
        std::env::var("KILN_TEST_PAUSE")
            .map(|spec| parse(&spec))
            .unwrap_or_default()
    })
}

fn parse(spec: &str) -> HashMap<String, Duration> {
    spec.split(',')
        .filter_map(|item| {
            let (point, ms) = item.trim().split_once('=')?;
            Some((point.to_owned(), Duration::from_millis(ms.parse().ok()?)))
        })
        .collect()
}

/// Sleep here if a pause is set for `point`.
pub async fn pause(point: &str) {
    if let Some(duration) = pauses().get(point) {
        tracing::warn!("KILN_TEST_PAUSE: pausing {duration:?} at {point}");
        tokio::time::sleep(*duration).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_names_points_and_milliseconds() {
        let p = parse("a.b=1500, c=20,broken,d=x");
        assert_eq!(p.len(), 2);
        assert_eq!(p["a.b"], Duration::from_millis(1500));
        assert_eq!(p["c"], Duration::from_millis(20));
    }
}
