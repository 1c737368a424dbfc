//! RedisServer against the real redis-server.

use herald_testkit::{RedisServer, ServerOptions};

#[test]
fn start_set_get_and_addresses() {
    let server = RedisServer::start();
    let port = server.port();
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
    assert_eq!(server.addr().to_string(), format!("127.0.0.1:{port}"));
    assert_eq!(server.cmd(&["SET", "greeting", "hello"]), "OK");
    assert_eq!(server.cmd(&["GET", "greeting"]), "hello");
    assert_eq!(
        server.cmd(&["CONFIG", "GET", "appendfsync"]),
        "appendfsync\nalways"
    );
    assert!(server.dir().join("redis.log").exists());
}

#[test]
fn kill9_then_restart_with_aof_keeps_acknowledged_writes() {
    let mut server = RedisServer::start();
    let port = server.port();
    for i in 0..20 {
        assert_eq!(
            server.cmd(&["RPUSH", "accepted", &i.to_string()]),
            (i + 1).to_string()
        );
    }
    server.kill9();
    assert!(!server.is_running());
    assert!(
        std::net::TcpStream::connect(server.addr()).is_err(),
        "killed server still accepts connections"
    );

    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(server.cmd(&["LLEN", "accepted"]), "20");
    assert_eq!(server.cmd(&["LINDEX", "accepted", "-1"]), "19");
}

#[test]
fn restart_without_aof_loses_data() {
    let mut server = RedisServer::start_with(ServerOptions::default().append_only(false));
    assert_eq!(server.cmd(&["SET", "k", "v"]), "OK");
    server.kill9();
    server.restart();
    assert_eq!(server.cmd(&["EXISTS", "k"]), "0");
}

#[test]
fn stop_is_graceful_and_restart_brings_data_back() {
    let mut server = RedisServer::start();
    assert_eq!(server.cmd(&["SET", "k", "v"]), "OK");
    server.stop();
    assert!(!server.is_running());
    server.restart();
    assert_eq!(server.cmd(&["GET", "k"]), "v");
}

#[test]
fn extra_config_lines_apply() {
    let server = RedisServer::start_with(
        ServerOptions::default()
            .config("maxmemory 10mb")
            .config("maxmemory-policy allkeys-lru"),
    );
    assert_eq!(
        server.cmd(&["CONFIG", "GET", "maxmemory"]),
        "maxmemory\n10485760"
    );
    assert_eq!(
        server.cmd(&["CONFIG", "GET", "maxmemory-policy"]),
        "maxmemory-policy\nallkeys-lru"
    );
}

#[test]
fn drop_kills_the_process() {
    let server = RedisServer::start();
    let addr = server.addr();
    drop(server);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "dropped server still accepts connections"
    );
}

#[test]
#[should_panic(expected = "Bad directive or wrong number of arguments")]
fn a_start_failure_reports_what_redis_said() {
    RedisServer::start_with(ServerOptions::default().config("no-such-directive 1"));
}
