//! Running one test case against each storage engine.

/// The storage engine a case runs on.
#[derive(Clone, Copy, Debug)]
pub enum Engine {
    Embedded,
    Redis,
}

/// Makes each `async fn case(engine: Engine)` two tests, `embedded::case` and `redis::case`.
/// The calling file must have `Engine` in scope at its root.
#[allow(unused_macros)]
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Engine::Embedded).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Engine::Redis).await;
                }
            )*
        }
    };
}
