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
    eprintln!(
        "DNS on {}, CDN edge on {}:{}, origin on {}:{}; Ctrl-C to stop",
        world.dns.addr(),
        world.edge_ip,
        testkit::world::PORT,
        world.origin_ip,
        testkit::world::PORT
    );
    let _ = tokio::signal::ctrl_c().await;
}
