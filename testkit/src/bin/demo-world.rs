//! Runs the loopback world of `examples/` until Ctrl-C, and prints the flags that point
//! `httpsdelivery-operator check` (or `run`) at it.

use testkit::world::World;

#[tokio::main]
async fn main() {
    let world = match World::start().await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: cannot start the loopback world: {e}");
            std::process::exit(1);
        }
    };
    println!("{}", world.probe_args().join(" "));
    eprintln!("{}; Ctrl-C to stop", world.summary());
    let _ = tokio::signal::ctrl_c().await;
}
