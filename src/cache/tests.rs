use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn memory_only() -> ResultCache {
    let config: CacheConfig =
        toml::from_str("memory_bytes = 1048576\n").expect("a [cache] section");
    ResultCache::new(&config).expect("builds")
}

fn plan(tables: &[&str]) -> Plan {
    Plan {
        ttl: Duration::from_secs(60),
        tables: tables.iter().map(|t| t.to_string()).collect(),
        source: Arc::from("test"),
    }
}

/// The ticket of the first lookup of `key` in an empty cache.
async fn first_miss(cache: &ResultCache, key: Key, plan: &Plan) -> Ticket {
    match cache.lookup(key, plan).await {
        Lookup::Miss(ticket) => ticket,
        _ => panic!("an empty cache misses"),
    }
}

#[tokio::test]
async fn concurrent_misses_on_one_key_run_the_query_once() {
    let cache = Arc::new(memory_only());
    let key = Key([7; 16]);
    let plan = Arc::new(plan(&["db.orders"]));
    let misses = Arc::new(AtomicUsize::new(0));
    let lookups: Vec<_> = (0..16)
        .map(|_| {
            let (cache, plan, misses) = (cache.clone(), plan.clone(), misses.clone());
            tokio::spawn(async move {
                match cache.lookup(key, &plan).await {
                    Lookup::Miss(ticket) => {
                        misses.fetch_add(1, Ordering::SeqCst);
                        // The query takes a while; the others must wait.
                        tokio::task::yield_now().await;
                        cache.store(ticket, Bytes::from_static(b"rows")).await;
                        Bytes::from_static(b"rows")
                    }
                    Lookup::Hit(response, Tier::Memory) => response,
                    _ => panic!("memory-only lookups neither bypass nor hit Redis"),
                }
            })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(lookup.await.expect("ran"), Bytes::from_static(b"rows"));
    }
    assert_eq!(misses.load(Ordering::SeqCst), 1, "one query for 16 misses");
}

#[tokio::test]
async fn a_write_to_a_table_makes_its_entries_misses() {
    let cache = memory_only();
    let (key, plan) = (Key([1; 16]), plan(&["db.orders"]));
    let ticket = first_miss(&cache, key, &plan).await;
    cache.store(ticket, Bytes::from_static(b"old")).await;
    cache.invalidate(&["db.customers".to_string()]).await;
    assert!(matches!(cache.lookup(key, &plan).await, Lookup::Hit(..)));
    cache.invalidate(&["db.orders".to_string()]).await;
    assert!(matches!(cache.lookup(key, &plan).await, Lookup::Miss(_)));
}

#[tokio::test]
async fn a_read_that_raced_a_write_is_stored_stale_and_never_served() {
    let cache = memory_only();
    let (key, plan) = (Key([2; 16]), plan(&["db.orders"]));
    let ticket = first_miss(&cache, key, &plan).await;
    // The write lands while the read's query runs.
    cache.invalidate(&["db.orders".to_string()]).await;
    cache.store(ticket, Bytes::from_static(b"maybe old")).await;
    assert!(matches!(cache.lookup(key, &plan).await, Lookup::Miss(_)));
}

#[tokio::test]
async fn a_write_sluice_cannot_name_the_tables_of_invalidates_everything() {
    let cache = memory_only();
    let (key, plan) = (Key([3; 16]), plan(&["db.orders"]));
    let ticket = first_miss(&cache, key, &plan).await;
    cache.store(ticket, Bytes::from_static(b"rows")).await;
    cache.invalidate(&[all_tables()]).await;
    assert!(matches!(cache.lookup(key, &plan).await, Lookup::Miss(_)));
}
