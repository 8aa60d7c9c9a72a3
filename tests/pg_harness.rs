//! The test PostgreSQL harness itself (`tests/common/pg.rs`): one server per test process,
//! distinct fresh databases, reachable at the URLs it hands out. Independent of the botyard
//! backend, so it runs in both test passes.

#[path = "common/pg.rs"]
mod pg;

use pg::{PgCluster, database_name};

#[test]
fn two_databases_exist_and_are_distinct() {
    let pg = PgCluster::shared();
    let a = pg.new_database();
    let b = pg.new_database();
    let (na, nb) = (database_name(&a), database_name(&b));
    assert_ne!(na, nb, "{a} / {b}");

    let listed = pg.psql("postgres", "SELECT datname FROM pg_database");
    let names: Vec<&str> = listed.lines().collect();
    assert!(names.contains(&na), "{na} not in {names:?}");
    assert!(names.contains(&nb), "{nb} not in {names:?}");

    // Each URL reaches its own database (the URL form botyard is given).
    assert_eq!(pg.psql(&a, "SELECT current_database()").trim(), na);
    assert_eq!(pg.psql(&b, "SELECT current_database()").trim(), nb);
    // Distinct storage, not two names for one database: a table made in one is absent in the
    // other.
    pg.psql(
        &a,
        "CREATE TABLE only_in_a (x int); INSERT INTO only_in_a VALUES (7)",
    );
    assert_eq!(pg.psql(&a, "SELECT x FROM only_in_a").trim(), "7");
    assert_eq!(
        pg.psql(
            &b,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"
        )
        .trim(),
        "0"
    );

    // UTF-8 whatever the machine's locale; socket only, no TCP listener.
    assert_eq!(pg.psql(&a, "SHOW server_encoding").trim(), "UTF8");
    assert_eq!(pg.psql(&a, "SHOW listen_addresses").trim(), "");

    pg.drop_database(&a);
    pg.drop_database(&b);
    let after = pg.psql("postgres", "SELECT datname FROM pg_database");
    assert!(!after.lines().any(|n| n == na || n == nb), "{after}");
}

#[test]
fn parallel_threads_share_one_server_and_get_their_own_databases() {
    let handles: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(|| {
                let pg = PgCluster::shared();
                (pg as *const PgCluster as usize, pg.new_database())
            })
        })
        .collect();
    let results: Vec<(usize, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let first = results[0].0;
    assert!(
        results.iter().all(|(p, _)| *p == first),
        "one server per process"
    );
    let mut names: Vec<&str> = results.iter().map(|(_, u)| database_name(u)).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), results.len(), "{results:?}");
    let pg = PgCluster::shared();
    for (_, url) in &results {
        assert_eq!(
            pg.psql(url, "SELECT current_database()").trim(),
            database_name(url)
        );
        pg.drop_database(url);
    }
}
